// SPDX-License-Identifier: MIT
// Operator-level profile of a piece of LibTorch work, through LibTorch's own (legacy) profiler:
// self time per operator and the FLOPs LibTorch attributes to convolutions and matmuls.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace autoassign {

struct OpStat {
  std::string name;
  int64_t calls = 0;
  double self_ms = 0;   ///< time in the op minus its child ops
  double total_ms = 0;  ///< including children (nested calls of the same op counted once)
  double flops = 0;
};

struct Profile {
  std::vector<OpStat> ops;  ///< sorted by self time, largest first
  double total_flops = 0;   ///< sum over outermost ops that carry a FLOP count
  double wall_ms = 0;
};

/// Runs `fn` once under the profiler (input shapes and FLOPs recorded).
Profile profile(const std::function<void()>& fn);

}  // namespace autoassign
