// SPDX-License-Identifier: MIT
// The labels-file parser: never throws, every name is valid UTF-8 (it reaches JSON and GLib),
// and a warning names each line it had to repair.
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "autoassign/core/types.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> warnings;
  const auto names =
      autoassign::parse_labels(autoassign::fuzz::text(data, size), "fuzz.txt", &warnings);
  for (const auto& n : names) {
    bool changed = false;
    autoassign::sanitize_utf8(n, &changed);
    if (changed || n.empty()) std::abort();
    nlohmann::json(n).dump();  // throws (and the fuzzer reports it) on invalid UTF-8
  }
  if (warnings.size() > names.size()) std::abort();
  return 0;
}
