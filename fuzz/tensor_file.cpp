// SPDX-License-Identifier: MIT
// The model-file reader's header parser (tensor_file.h), on whole files in memory: either a
// named std::invalid_argument, or a header whose tensors tile the data section exactly, each
// of numel x element-size bytes; a "config" in its metadata goes through the config parser.
#include "autoassign/core/tensor_file.h"

#include <cstdlib>
#include <stdexcept>

#include "autoassign/core/config.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace autoassign;
  TensorFileHeader h;
  try {
    h = parse_tensor_file(fuzz::text(data, size));
  } catch (const std::invalid_argument&) {
    return 0;
  }
  if (h.data_offset + h.data_size != size) std::abort();
  uint64_t at = 0;
  for (const auto& t : h.tensors) {
    if (t.begin != at || t.end > h.data_size) std::abort();
    if (t.end - t.begin != static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype)) std::abort();
    at = t.end;
  }
  if (at != h.data_size) std::abort();
  if (auto it = h.metadata.find("config"); it != h.metadata.end()) {
    try {
      ModelConfig::from_json(it->second, "fuzz");
    } catch (const std::invalid_argument&) {
    }
  }
  return 0;
}
