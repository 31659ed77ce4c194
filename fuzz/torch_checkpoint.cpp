// SPDX-License-Identifier: MIT
// The PyTorch checkpoint reader (torch_checkpoint.h) on whole files in memory: either a named
// std::invalid_argument, or a checkpoint whose every tensor view lies inside the bytes the
// reader hands out for it (offset + the furthest strided element, times the element size).
#include "autoassign/core/torch_checkpoint.h"

#include <cstdlib>
#include <stdexcept>

#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace autoassign;
  try {
    const auto ck = TorchCheckpoint::parse(fuzz::text(data, size), "fuzz.pth");
    for (const auto& [name, t] : ck.state_dict()) {
      const std::string_view bytes = ck.tensor_bytes(t);
      if (t.numel() == 0) continue;
      uint64_t last = 0;
      for (size_t i = 0; i < t.shape.size(); ++i) {
        last += static_cast<uint64_t>(t.shape[i] - 1) * static_cast<uint64_t>(t.stride[i]);
      }
      if ((last + 1) * torch_dtype_size(t.dtype) > bytes.size()) std::abort();
      volatile char sink = bytes[(last + 1) * torch_dtype_size(t.dtype) - 1];
      (void)sink;
    }
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
