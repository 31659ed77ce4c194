// SPDX-License-Identifier: MIT
// The WxH parser: accepts exactly "<1-5 digits>x<1-5 digits>" with both sides >= 1 (a regular
// expression is the independent judge), and returns the numbers written.
#include <cstdlib>
#include <regex>

#include "autoassign/core/types.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s = autoassign::fuzz::text(data, size);
  int w = -1, h = -1;
  const bool ok = autoassign::parse_size(s, &w, &h);
  static const std::regex form("[0-9]{1,5}x[0-9]{1,5}");
  const bool shaped = std::regex_match(s, form);
  if (ok && !shaped) std::abort();
  if (ok && (w != std::stoi(s.substr(0, s.find('x'))) || h != std::stoi(s.substr(s.find('x') + 1))))
    std::abort();
  if (shaped && !ok && std::stoi(s.substr(0, s.find('x'))) > 0 &&
      std::stoi(s.substr(s.find('x') + 1)) > 0) {
    std::abort();  // a well-formed size with both sides >= 1 was refused
  }
  return 0;
}
