// SPDX-License-Identifier: MIT
// Torch-free value types shared by the library, the plugin and the CLI: pixels, devices,
// detections and the errors a caller may want to tell apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace autoassign {

/// Where tensors live: "cpu", "cuda" (= "cuda:0") or "cuda:N".
struct Device {
  enum class Type { kCpu, kCuda };
  Type type = Type::kCpu;
  int index = 0;

  /// Parses "cpu", "cuda", "cuda:N"; throws std::invalid_argument naming the bad string.
  static Device parse(const std::string& text);
  std::string str() const;
  bool is_cuda() const { return type == Type::kCuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
};

/// Pixel layouts accepted by ImageView. Packed formats use plane 0 only; the "x"/"A" byte of
/// the 4-byte formats is ignored. NV12: Y plane + interleaved UV plane at half resolution.
/// I420: Y, U, V planes, U and V at half resolution. YUV follows ImageView::matrix and
/// full_range (default BT.601 limited range, GStreamer's default for SD and OpenCV's).
enum class PixelFormat { kRGB, kBGR, kRGBx, kBGRx, kRGBA, kBGRA, kNV12, kI420, kGRAY8 };

/// The YUV -> RGB matrix of a YUV frame (GStreamer's colorimetry "matrix"): HD cameras send
/// BT.709, SD BT.601, UHD/HDR BT.2020.
enum class YuvMatrix { kBT601, kBT709, kBT2020 };

/// "RGB", "BGR", "RGBx", ... (GStreamer's names); throws std::invalid_argument otherwise.
PixelFormat parse_pixel_format(const std::string& name);
const char* pixel_format_name(PixelFormat format);
int pixel_format_planes(PixelFormat format);
/// Bytes per pixel of plane 0 for packed formats (1 for GRAY8 and the Y plane of YUV).
int pixel_format_bytes_per_pixel(PixelFormat format);

/// Pixels the caller owns, described but not copied. Strides are in bytes.
struct ImageView {
  PixelFormat format = PixelFormat::kRGB;
  int width = 0;
  int height = 0;
  const std::uint8_t* planes[3] = {nullptr, nullptr, nullptr};
  int strides[3] = {0, 0, 0};
  /// Bytes readable from planes[p] on, where the caller knows them (a mapped buffer's size);
  /// 0 = not known. validate() checks that stride x rows fits in them.
  std::size_t sizes[3] = {0, 0, 0};
  /// YUV formats only: the colour matrix and range (full 0-255, or limited 16-235/240).
  YuvMatrix matrix = YuvMatrix::kBT601;
  bool full_range = false;
  Device device;

  /// One-plane image (RGB/BGR/RGBx/BGRx/RGBA/BGRA/GRAY8); stride 0 means tightly packed.
  static ImageView packed(PixelFormat format, const std::uint8_t* data, int width, int height,
                          int stride = 0);
  static ImageView nv12(const std::uint8_t* y, int y_stride, const std::uint8_t* uv, int uv_stride,
                        int width, int height);
  static ImageView i420(const std::uint8_t* y, int y_stride, const std::uint8_t* u, int u_stride,
                        const std::uint8_t* v, int v_stride, int width, int height);

  /// Throws std::invalid_argument naming the first thing wrong (size, pointer, stride, a plane
  /// that does not fit in its known size).
  void validate() const;
};

/// One detected object, in the pixels of the frame given to detect().
struct Detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float score = 0;
  int label_id = 0;
  std::string label;
};

/// "WxH" (e.g. "1280x768": decimal digits only, each side 1..99999, nothing before or after)
/// -> width and height; false for anything else. The one parser of sizes for the CLI, the
/// element and the programs.
bool parse_size(const std::string& text, int* width, int* height);

/// "HOST:PORT", "[IPv6]:PORT" or a bare "HOST" (then `default_port`) -> host (brackets removed)
/// and port; PORT is 1-5 decimal digits, 0..65535. False for an empty host, an empty or
/// non-numeric port, or a bare IPv6 address (its colons would be ambiguous). The one splitter
/// of network addresses for the elements and programs; each caller adds its own rules (a
/// port of 0, numeric addresses only).
bool parse_host_port(const std::string& text, int default_port, std::string* host, int* port);

/// Why `topic` cannot be an MQTT topic to publish to, or "" when it can (MQTT 3.1.1, 4.7):
/// empty, longer than 65,535 bytes, holding a wildcard ('+', '#': for subscriptions only) or a
/// NUL, or not valid UTF-8. A broker drops what is published to such a topic without a word.
std::string mqtt_publish_topic_problem(const std::string& topic);

/// `text` with every byte sequence that is not valid UTF-8 (stray continuation bytes, overlong
/// forms, surrogates, code points above U+10FFFF, truncated sequences) replaced by U+FFFD.
/// `*changed` (when given) says whether anything was replaced. Text from files, properties and
/// other elements' metadata goes through this before it reaches JSON or GLib.
std::string sanitize_utf8(const std::string& text, bool* changed = nullptr);

/// `text` with the user information of every URL in it ("rtsp://user:pass@host/..." ->
/// "rtsp://***@host/...") replaced, for logs, JSON and summaries: camera URLs carry passwords.
std::string redact_credentials(const std::string& text);

/// A labels file's text: one name per non-empty line (trailing spaces and CR dropped). A line
/// that is not valid UTF-8 keeps its place with the bad bytes replaced by U+FFFD, and
/// `warnings` gets a message naming `source` and the line number.
std::vector<std::string> parse_labels(const std::string& text, const std::string& source,
                                      std::vector<std::string>* warnings);

/// A model file that cannot be used. kind() lets a caller map it to its own error domain
/// (GStreamer's RESOURCE NOT_FOUND / READ / SETTINGS); what() names the path and the reason.
class ModelFileError : public std::runtime_error {
 public:
  enum class Kind {
    kNotFound,    ///< no such file
    kUnreadable,  ///< exists but cannot be opened or read
    kCorrupt,     ///< truncated, not a model archive, or fields/weights missing or malformed
    kVersion,     ///< an autoassign model of another format version
  };
  ModelFileError(Kind kind, const std::string& path, const std::string& reason);
  Kind kind() const { return kind_; }
  const std::string& path() const { return path_; }

 private:
  Kind kind_;
  std::string path_;
};

/// A device that this LibTorch cannot use (CUDA asked for, no CUDA compiled in or present).
class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace autoassign
