// SPDX-License-Identifier: MIT
#include "autoassign/profile.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <torch/csrc/autograd/profiler_legacy.h>

namespace autoassign {

Profile profile(const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  namespace impl = torch::profiler::impl;
  impl::ProfilerConfig config(impl::ProfilerState::CPU, /*report_input_shapes=*/true,
                              /*profile_memory=*/false, /*with_stack=*/false,
                              /*with_flops=*/true);
  Profile result;
  const auto t0 = std::chrono::steady_clock::now();
  prof::enableProfilerLegacy(config);
  try {
    fn();
  } catch (...) {
    prof::disableProfilerLegacy();
    throw;
  }
  auto lists = prof::disableProfilerLegacy();
  result.wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  std::map<std::string, OpStat> by_name;
  for (auto& list : lists) {
    // Push/pop ranges nest per thread; a stack gives each op its children's time.
    struct Open {
      prof::LegacyEvent* push;
      double child_us;
      bool inside_flop_op;
    };
    std::vector<Open> stack;
    std::map<std::string, int> open_count;
    for (auto& ev : list) {
      if (ev.kind() == prof::EventKind::PushRange) {
        const bool inside =
            !stack.empty() && (stack.back().inside_flop_op || stack.back().push->flops() > 0);
        stack.push_back({&ev, 0.0, inside});
        ++open_count[ev.name()];
      } else if (ev.kind() == prof::EventKind::PopRange && !stack.empty()) {
        Open open = stack.back();
        stack.pop_back();
        const double us = open.push->cpuElapsedUs(ev);
        OpStat& s = by_name[open.push->name()];
        s.name = open.push->name();
        s.calls += 1;
        s.self_ms += (us - open.child_us) / 1000.0;
        if (--open_count[s.name] == 0) s.total_ms += us / 1000.0;
        if (!open.inside_flop_op && open.push->flops() > 0) {
          s.flops += static_cast<double>(open.push->flops());
          result.total_flops += static_cast<double>(open.push->flops());
        }
        if (!stack.empty()) stack.back().child_us += us;
      }
    }
  }
  for (auto& [name, s] : by_name) {
    if (name != "[memory]") result.ops.push_back(s);
  }
  std::sort(result.ops.begin(), result.ops.end(),
            [](const OpStat& a, const OpStat& b) { return a.self_ms > b.self_ms; });
  return result;
}

}  // namespace autoassign
