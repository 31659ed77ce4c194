// SPDX-License-Identifier: MIT
#include "autoassign/core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "autoassign/core/types.h"

namespace autoassign {
namespace {

// What a non-regular file is, in words, or "" for a regular one.
std::string not_regular(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "is a directory";
  if (S_ISFIFO(mode)) return "is a FIFO (named pipe), not a regular file";
  if (S_ISCHR(mode)) return "is a character device, not a regular file";
  if (S_ISBLK(mode)) return "is a block device, not a regular file";
  if (S_ISSOCK(mode)) return "is a socket, not a regular file";
  return "is not a regular file";
}

std::string megabytes(uint64_t bytes) {
  return bytes % (1u << 20) == 0 ? std::to_string(bytes >> 20) + " MB"
                                 : std::to_string(bytes) + " bytes";
}

}  // namespace

std::string regular_file_problem(const std::string& path, FileError::Kind* kind) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (kind) *kind = err == ENOENT ? FileError::Kind::kNotFound : FileError::Kind::kUnreadable;
    // ELOOP: a symlink loop; the other errors as the system words them.
    return err == ENOENT ? "no such file" : std::strerror(err);
  }
  const std::string why = not_regular(st.st_mode);
  if (!why.empty() && kind) *kind = FileError::Kind::kNotRegular;
  return why;
}

std::string read_file_capped(const std::string& path, uint64_t max_bytes, const std::string& what) {
  const std::string prefix = what + " '" + path + "': ";
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw FileError(FileError::Kind::kNotFound, prefix, "no such file");
    throw FileError(FileError::Kind::kUnreadable, prefix, std::strerror(err));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw FileError(FileError::Kind::kUnreadable, prefix, std::strerror(errno));
  }
  const std::string why = not_regular(st.st_mode);
  if (!why.empty()) throw FileError(FileError::Kind::kNotRegular, prefix, why);
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    throw FileError(FileError::Kind::kTooLarge, prefix, "larger than " + megabytes(max_bytes));
  }
  std::string text;
  text.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw FileError(FileError::Kind::kUnreadable, prefix, std::strerror(errno));
    }
    // The bytes read count, not the size stat() reported.
    if (text.size() + static_cast<size_t>(n) > max_bytes) {
      throw FileError(FileError::Kind::kTooLarge, prefix, "larger than " + megabytes(max_bytes));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

std::vector<std::string> read_labels_file(const std::string& path,
                                          std::vector<std::string>* warnings) {
  return parse_labels(read_file_capped(path, kMaxLabelsFileBytes, "labels file"), path, warnings);
}

namespace {

uint32_t be16(const std::string& b, size_t i) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(b[i])) << 8) |
         static_cast<unsigned char>(b[i + 1]);
}
uint32_t be32(const std::string& b, size_t i) { return (be16(b, i) << 16) | be16(b, i + 2); }
uint32_t le32(const std::string& b, size_t i) {
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[i + k]);
  return v;
}

[[noreturn]] void bad_image(const std::string& what) { throw std::invalid_argument(what); }

ImageHeader jpeg_header(const std::string& b) {
  // Markers from after SOI: each FF xx with a 16-bit length, up to the first frame header
  // (SOF0..SOF15 but DHT C4, JPG C8, DAC CC), which holds the height and width.
  ImageHeader h{"jpeg"};
  size_t i = 2;
  for (;;) {
    if (i + 4 > b.size()) bad_image("truncated JPEG (no frame header)");
    if (static_cast<unsigned char>(b[i]) != 0xFF)
      bad_image("damaged JPEG (no marker where one belongs)");
    const unsigned marker = static_cast<unsigned char>(b[i + 1]);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    const uint32_t len = be16(b, i + 2);
    if (len < 2) bad_image("damaged JPEG (a segment shorter than its length field)");
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (i + 9 > b.size()) bad_image("truncated JPEG (in its frame header)");
      h.height = be16(b, i + 5);
      h.width = be16(b, i + 7);
      break;
    }
    if (marker == 0xDA || marker == 0xD9)
      bad_image("damaged JPEG (image data before a frame header)");
    i += 2 + len;
  }
  // The end-of-image marker: within the last bytes (cameras may append a little after it).
  const size_t tail = b.size() > 4096 ? b.size() - 4096 : 0;
  const size_t eoi = b.rfind("\xFF\xD9");
  if (eoi == std::string::npos || eoi < tail) {
    bad_image("truncated JPEG (no end-of-image marker)");
  }
  return h;
}

ImageHeader png_header(const std::string& b) {
  // Signature, then IHDR first: length 13, width and height big-endian; IEND closes the file.
  if (b.size() < 33 || b.compare(12, 4, "IHDR") != 0)
    bad_image("damaged PNG (no IHDR chunk first)");
  ImageHeader h{"png", be32(b, 16), be32(b, 20)};
  if (b.compare(b.size() - 8, 4, "IEND") != 0) {  // b holds 33 bytes at least
    bad_image("truncated PNG (no IEND chunk at the end)");
  }
  return h;
}

ImageHeader bmp_header(const std::string& b) {
  if (b.size() < 26) bad_image("truncated BMP header");
  const int32_t w = static_cast<int32_t>(le32(b, 18)), hgt = static_cast<int32_t>(le32(b, 22));
  if (le32(b, 2) > b.size()) bad_image("truncated BMP (shorter than its header says)");
  return ImageHeader{"bmp", std::abs(static_cast<int64_t>(w)), std::abs(static_cast<int64_t>(hgt))};
}

}  // namespace

ImageHeader read_image_header(const std::string& b) {
  ImageHeader h;
  if (b.size() >= 3 && b.compare(0, 3, "\xFF\xD8\xFF") == 0) {
    h = jpeg_header(b);
  } else if (b.size() >= 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0) {
    h = png_header(b);
  } else if (b.size() >= 2 && b.compare(0, 2, "BM") == 0) {
    h = bmp_header(b);
  } else {
    bad_image(b.empty() ? "empty file" : "not a JPEG, PNG or BMP file");
  }
  if (h.width < 1 || h.height < 1) {
    bad_image(h.format + " header states a size of " + std::to_string(h.width) + "x" +
              std::to_string(h.height));
  }
  // Divided, not multiplied: two 32-bit sides overflow even 64 bits' product range checks
  // (found by the image_header fuzz target: 3840206052 x 3840206052).
  if (h.width > kMaxImagePixels / h.height) {
    bad_image(h.format + " of " + std::to_string(h.width) + "x" + std::to_string(h.height) +
              ", above the limit of " + std::to_string(kMaxImagePixels / 1000000) + " megapixels");
  }
  return h;
}

}  // namespace autoassign
