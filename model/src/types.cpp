// SPDX-License-Identifier: MIT
#include "autoassign/types.h"

#include <cstdio>
#include <cstdlib>

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

void ImageView::validate() const {
  const auto& fi = info(format);
  if (width <= 0 || height <= 0) {
    throw std::invalid_argument("image size must be positive, got " + std::to_string(width) + "x" +
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
  }
}

bool parse_size(const std::string& text, int* width, int* height) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &w, &x, &h, &extra) != 3 || x != 'x' || w < 1 ||
      h < 1) {
    return false;
  }
  *width = w;
  *height = h;
  return true;
}

ModelFileError::ModelFileError(Kind kind, const std::string& path, const std::string& reason)
    : std::runtime_error("model file '" + path + "': " + reason), kind_(kind), path_(path) {}

}  // namespace autoassign
