// SPDX-License-Identifier: MIT
#include "autoassign/core/types.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace autoassign {
namespace {

struct FormatInfo {
  PixelFormat format;
  const char* name;
  int planes;
  int bytes_per_pixel;
};

constexpr FormatInfo kFormats[] = {
    {PixelFormat::kRGB, "RGB", 1, 3},     {PixelFormat::kBGR, "BGR", 1, 3},
    {PixelFormat::kRGBx, "RGBx", 1, 4},   {PixelFormat::kBGRx, "BGRx", 1, 4},
    {PixelFormat::kRGBA, "RGBA", 1, 4},   {PixelFormat::kBGRA, "BGRA", 1, 4},
    {PixelFormat::kNV12, "NV12", 2, 1},   {PixelFormat::kI420, "I420", 3, 1},
    {PixelFormat::kGRAY8, "GRAY8", 1, 1},
};

const FormatInfo& info(PixelFormat f) {
  for (const auto& i : kFormats) {
    if (i.format == f) return i;
  }
  throw std::invalid_argument("unknown pixel format " + std::to_string(static_cast<int>(f)));
}

}  // namespace

Device Device::parse(const std::string& text) {
  Device d;
  if (text == "cpu") return d;
  if (text == "cuda") {
    d.type = Type::kCuda;
    return d;
  }
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    char* end = nullptr;
    const long index = std::strtol(text.c_str() + 5, &end, 10);
    if (*end == '\0' && index >= 0 && index < 1024) {
      d.type = Type::kCuda;
      d.index = static_cast<int>(index);
      return d;
    }
  }
  throw std::invalid_argument("invalid device '" + text + "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const {
  return type == Type::kCpu ? "cpu" : "cuda:" + std::to_string(index);
}

PixelFormat parse_pixel_format(const std::string& name) {
  for (const auto& i : kFormats) {
    if (name == i.name) return i.format;
  }
  throw std::invalid_argument("unsupported pixel format '" + name +
                              "' (expected RGB, BGR, RGBx, BGRx, RGBA, BGRA, NV12, I420, GRAY8)");
}

const char* pixel_format_name(PixelFormat format) { return info(format).name; }
int pixel_format_planes(PixelFormat format) { return info(format).planes; }
int pixel_format_bytes_per_pixel(PixelFormat format) { return info(format).bytes_per_pixel; }

ImageView ImageView::packed(PixelFormat format, const std::uint8_t* data, int width, int height,
                            int stride) {
  ImageView v;
  v.format = format;
  v.width = width;
  v.height = height;
  v.planes[0] = data;
  v.strides[0] = stride > 0 ? stride : width * pixel_format_bytes_per_pixel(format);
  return v;
}

ImageView ImageView::nv12(const std::uint8_t* y, int y_stride, const std::uint8_t* uv,
                          int uv_stride, int width, int height) {
  ImageView v;
  v.format = PixelFormat::kNV12;
  v.width = width;
  v.height = height;
  v.planes[0] = y;
  v.planes[1] = uv;
  v.strides[0] = y_stride;
  v.strides[1] = uv_stride;
  return v;
}

ImageView ImageView::i420(const std::uint8_t* y, int y_stride, const std::uint8_t* u, int u_stride,
                          const std::uint8_t* v, int v_stride, int width, int height) {
  ImageView view;
  view.format = PixelFormat::kI420;
  view.width = width;
  view.height = height;
  view.planes[0] = y;
  view.planes[1] = u;
  view.planes[2] = v;
  view.strides[0] = y_stride;
  view.strides[1] = u_stride;
  view.strides[2] = v_stride;
  return view;
}

// Far above any camera (16K is 15360), small enough that width x 4 x height fits an int64
// without care and a row fits an int.
constexpr int kMaxImageSide = 1 << 16;

void ImageView::validate() const {
  const auto& fi = info(format);
  if (width <= 0 || height <= 0 || width > kMaxImageSide || height > kMaxImageSide) {
    throw std::invalid_argument("image size must be 1.." + std::to_string(kMaxImageSide) +
                                " on each side, got " + std::to_string(width) + "x" +
                                std::to_string(height));
  }
  for (int p = 0; p < fi.planes; ++p) {
    if (planes[p] == nullptr) {
      throw std::invalid_argument(std::string(fi.name) + " image: plane " + std::to_string(p) +
                                  " is null");
    }
    // Minimum bytes per row of this plane.
    int row = width * fi.bytes_per_pixel;
    if (p > 0) row = format == PixelFormat::kNV12 ? 2 * ((width + 1) / 2) : (width + 1) / 2;
    if (strides[p] < row) {
      throw std::invalid_argument(std::string(fi.name) + " image: stride of plane " +
                                  std::to_string(p) + " is " + std::to_string(strides[p]) +
                                  ", less than the " + std::to_string(row) + " bytes a row needs");
    }
    const int64_t rows = p > 0 ? (height + 1) / 2 : height;
    const int64_t need = (rows - 1) * static_cast<int64_t>(strides[p]) + row;
    if (sizes[p] > 0 && static_cast<uint64_t>(need) > sizes[p]) {
      throw std::invalid_argument(
          std::string(fi.name) + " image: plane " + std::to_string(p) + " needs " +
          std::to_string(need) + " bytes (" + std::to_string(rows) + " rows, stride " +
          std::to_string(strides[p]) + ") but its buffer holds " + std::to_string(sizes[p]));
    }
  }
}

bool parse_host_port(const std::string& text, int default_port, std::string* host, int* port) {
  std::string h = text, p;
  if (!text.empty() && text.front() == '[') {  // [IPv6] or [IPv6]:PORT
    const size_t close = text.find(']');
    if (close == std::string::npos || close == 1) return false;
    h = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon != std::string::npos) {
      if (text.find(':') != colon) return false;  // a bare IPv6 address: which colon is it?
      h = text.substr(0, colon);
      p = text.substr(colon + 1);
      if (p.empty()) return false;
    }
  }
  if (h.empty()) return false;
  int value = default_port;
  if (!p.empty()) {
    if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    value = std::stoi(p);
    if (value > 65535) return false;
  }
  *host = h;
  *port = value;
  return true;
}

std::string mqtt_publish_topic_problem(const std::string& topic) {
  if (topic.empty()) return "an MQTT topic cannot be empty";
  if (topic.size() > 65535) {
    return "an MQTT topic is at most 65535 bytes, this one has " + std::to_string(topic.size());
  }
  if (topic.find_first_of("+#") != std::string::npos) {
    return "'" + sanitize_utf8(topic.substr(0, 200)) +
           "' holds a wildcard ('+' or '#'), which only subscriptions may use";
  }
  if (topic.find('\0') != std::string::npos) return "an MQTT topic cannot hold a NUL byte";
  bool changed = false;
  sanitize_utf8(topic, &changed);
  if (changed) return "an MQTT topic must be valid UTF-8";
  return "";
}

bool parse_size(const std::string& text, int* width, int* height) {
  // Hand-written: sscanf's %d has undefined behaviour on overflow and accepts signs and spaces.
  auto number = [&](size_t& i, int* out) {
    const size_t begin = i;
    int v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - begin < 5) {
      v = v * 10 + (text[i] - '0');
      ++i;
    }
    *out = v;
    return i > begin && v >= 1;
  };
  size_t i = 0;
  int w = 0, h = 0;
  if (!number(i, &w) || i >= text.size() || text[i] != 'x') return false;
  ++i;
  if (!number(i, &h) || i != text.size()) return false;
  *width = w;
  *height = h;
  return true;
}

std::string sanitize_utf8(const std::string& text, bool* changed) {
  static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(text.size());
  bool replaced = false;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (p[i + k] & 0x3F);
      }
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      // One replacement per bad lead byte; the bytes after it are looked at afresh.
      out.append(kReplacement);
      replaced = true;
      ++i;
    }
  }
  if (changed) *changed = replaced;
  return out;
}

ModelFileError::ModelFileError(Kind kind, const std::string& path, const std::string& reason)
    : std::runtime_error("model file '" + path + "': " + reason), kind_(kind), path_(path) {}

std::vector<std::string> parse_labels(const std::string& text, const std::string& source,
                                      std::vector<std::string>* warnings) {
  std::vector<std::string> names;
  size_t start = 0;
  int number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    bool changed = false;
    names.push_back(sanitize_utf8(line, &changed));
    if (changed && warnings) {
      warnings->push_back("labels file '" + sanitize_utf8(source) + "' line " +
                          std::to_string(number) +
                          " is not valid UTF-8; its invalid bytes are shown as U+FFFD");
    }
  }
  return names;
}

std::string redact_credentials(const std::string& text) {
  std::string out;
  size_t at = 0;
  for (size_t scheme; (scheme = text.find("://", at)) != std::string::npos;) {
    const size_t host = scheme + 3;
    // The authority ends at the first '/', '?', '#', whitespace or quote; user information is
    // what comes before its last '@'.
    size_t end = host;
    while (end < text.size() &&
           std::string_view("/?# \t\n\"'").find(text[end]) == std::string_view::npos) {
      ++end;
    }
    const size_t amp = text.rfind('@', end == host ? host : end - 1);
    out += text.substr(at, host - at);
    if (amp != std::string::npos && amp >= host && amp < end) {
      out += "***";
      at = amp;
    } else {
      at = host;
    }
  }
  return out + text.substr(at);
}

}  // namespace autoassign
