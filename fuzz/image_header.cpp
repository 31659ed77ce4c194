// SPDX-License-Identifier: MIT
// The image header reader of `autoassign detect`: on any bytes it returns a size within the
// documented limit or throws std::invalid_argument; it never reads out of bounds (ASan), and
// what it accepts as a JPEG/PNG/BMP starts with that format's signature.
#include <cstdlib>
#include <stdexcept>

#include "autoassign/core/files.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s = autoassign::fuzz::text(data, size);
  try {
    const auto h = autoassign::read_image_header(s);
    if (h.width < 1 || h.height < 1 || h.width > autoassign::kMaxImagePixels / h.height) {
      std::abort();
    }
    const char* sig = h.format == "jpeg"  ? "\xFF\xD8\xFF"
                      : h.format == "png" ? "\x89PNG"
                      : h.format == "bmp" ? "BM"
                                          : nullptr;
    if (!sig || s.rfind(sig, 0) != 0) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
