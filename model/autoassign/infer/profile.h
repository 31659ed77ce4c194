// SPDX-License-Identifier: MIT
// Operator-level profile of a piece of LibTorch work, through LibTorch's own (legacy) profiler:
// self and total time per operator, and the input shapes each was called with. (FLOPs come
// from FlopCounter in layers.h: this LibTorch's profiler undercounts convolutions.)
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace autoassign {

struct OpStat {
  std::string name;
  int64_t calls = 0;
  double self_ms = 0;   ///< time in the op minus its child ops
  double total_ms = 0;  ///< including children (nested calls of the same op counted once)
  std::map<std::string, int64_t> input_shapes;  ///< first argument's shape -> calls
};

struct Profile {
  std::vector<OpStat> ops;  ///< sorted by self time, largest first
  double wall_ms = 0;
};

/// Runs `fn` once under the profiler (input shapes recorded).
Profile profile(const std::function<void()>& fn);

}  // namespace autoassign
