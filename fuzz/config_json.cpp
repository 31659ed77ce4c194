// SPDX-License-Identifier: MIT
// The model config parser (every field, today's and future ones, goes through from_json and
// validate): either a named std::invalid_argument, or a config that round-trips through
// to_json unchanged and whose size estimate stays under the bound.
#include <cstdlib>
#include <stdexcept>

#include "autoassign/core/config.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using autoassign::ModelConfig;
  ModelConfig c;
  try {
    c = ModelConfig::from_json(autoassign::fuzz::text(data, size), "fuzz");
  } catch (const std::invalid_argument&) {
    return 0;
  }
  const std::string once = c.to_json();
  if (ModelConfig::from_json(once, "round trip").to_json() != once) std::abort();
  if (!(c.parameter_estimate() <= 1e9)) std::abort();
  return 0;
}
