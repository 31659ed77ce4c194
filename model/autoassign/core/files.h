// SPDX-License-Identifier: MIT
// Reading files users name (configs, labels, model files) without the ways a path can hurt:
// a FIFO that blocks open() or read() forever, /dev/zero that never ends, a directory, a file
// that grows while it is read. Every reader of such a path goes through here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace autoassign {

/// A path that cannot be read as asked; what() names the path and the reason.
class FileError : public std::invalid_argument {
 public:
  enum class Kind {
    kNotFound,    ///< no such file
    kNotRegular,  ///< a directory, FIFO, device or socket
    kTooLarge,    ///< more bytes than the reader's documented limit
    kUnreadable,  ///< permissions, I/O error
  };
  /// what() is `context` + `reason` (the context names the file: "labels file 'x': ").
  FileError(Kind kind, const std::string& context, const std::string& reason)
      : std::invalid_argument(context + reason), kind_(kind), reason_(reason) {}
  Kind kind() const { return kind_; }
  /// The reason alone ("is a FIFO (named pipe), not a regular file").
  const std::string& reason() const { return reason_; }

 private:
  Kind kind_;
  std::string reason_;
};

/// Why `path` is not a regular file that can be opened ("no such file", "is a directory",
/// "is a FIFO (named pipe), not a regular file", "is a character device, ..."), with `kind`
/// set; empty when it is one. Looks with stat() only, so a FIFO cannot block it.
std::string regular_file_problem(const std::string& path, FileError::Kind* kind = nullptr);

/// The whole of the regular file at `path`, refused above `max_bytes` counting the bytes
/// actually read (a size on disk can lie: /proc, a file that grows). Opened non-blocking and
/// checked with fstat() on the open descriptor, so nothing swapped in after a check can block
/// it. FileError messages start with "<what> '<path>': ".
std::string read_file_capped(const std::string& path, uint64_t max_bytes, const std::string& what);

/// Labels files: 10,000 classes of 256-byte names fit in 3 MB; anything above 16 MB is not one.
constexpr uint64_t kMaxLabelsFileBytes = 16u << 20;
/// Config files (JSON): a preset is ~1 KB.
constexpr uint64_t kMaxConfigFileBytes = 1u << 20;

/// A labels file read with read_file_capped (kMaxLabelsFileBytes) and parse_labels (types.h):
/// one name per non-empty line, invalid UTF-8 replaced and reported in `warnings`.
std::vector<std::string> read_labels_file(const std::string& path,
                                          std::vector<std::string>* warnings);

/// Images (JPEG, PNG, BMP) the tools decode: above 256 MB a file is refused before it is read.
constexpr uint64_t kMaxImageFileBytes = 256u << 20;
/// And above 100 megapixels (e.g. 12,000 x 8,000; a 3-byte decoded copy is 300 MB) before it
/// is decoded.
constexpr int64_t kMaxImagePixels = 100000000;

/// What an image file's header states, read without decoding it.
struct ImageHeader {
  std::string format;  ///< "jpeg", "png" or "bmp"
  int64_t width = 0, height = 0;
};

/// The format and size that the bytes of a JPEG, PNG or BMP file state, and whether the file is
/// whole (JPEG: an end-of-image marker near the end; PNG: the IEND chunk last), without
/// decoding. Throws std::invalid_argument saying what is wrong: another format, a truncated or
/// damaged header, a truncated file, or more than kMaxImagePixels.
ImageHeader read_image_header(const std::string& bytes);

}  // namespace autoassign
