// SPDX-License-Identifier: MIT
#include "autoassign/infer/profile.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <torch/csrc/autograd/profiler_legacy.h>

namespace autoassign {

Profile profile(const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  namespace impl = torch::profiler::impl;
  impl::ProfilerConfig config(impl::ProfilerState::CPU, /*report_input_shapes=*/true);
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
    };
    std::vector<Open> stack;
    std::map<std::string, int> open_count;
    for (auto& ev : list) {
      if (ev.kind() == prof::EventKind::PushRange) {
        stack.push_back({&ev, 0.0});
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
        const auto shapes = open.push->shapes();
        if (!shapes.empty() && !shapes[0].empty()) {
          std::string key = "[";
          for (size_t i = 0; i < shapes[0].size(); ++i) {
            key += (i ? ", " : "") + std::to_string(shapes[0][i]);
          }
          ++s.input_shapes[key + "]"];
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
