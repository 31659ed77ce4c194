// SPDX-License-Identifier: MIT
// autoassign bench: forward latency, throughput and FLOPs per preset, size and thread count,
// optionally beside an ONNX peer run through OpenCV DNN in the same process and run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <torch/torch.h>

#include "autoassign/core/default_model.h"
#include "autoassign/core/tracker.h"
#include "autoassign/core/types.h"
#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/detector.h"
#include "autoassign/infer/profile.h"
#include "commands.h"

namespace autoassign::cli {
namespace {

struct Size {
  int w = 0, h = 0;
};

Size size_option(const std::string& s) {
  Size size;
  if (!autoassign::parse_size(s, &size.w, &size.h)) {
    throw CLI::ValidationError("--size", "expected WIDTHxHEIGHT, got '" + s + "'");
  }
  return size;
}

struct Timing {
  double median = 0, p90 = 0;
};

Timing summarise(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.median = ms[ms.size() / 2];
  t.p90 = ms[std::min(ms.size() - 1, static_cast<size_t>(0.9 * static_cast<double>(ms.size())))];
  return t;
}

template <typename Fn>
double time_once(Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

template <typename Fn>
Timing time_runs(Fn&& fn, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) ms.push_back(time_once(fn));
  return summarise(ms);
}

// A model timed against a peer in alternating blocks (kBlock runs of one, then of the
// other), so that a machine whose speed drifts over seconds (shared or throttled cores: 2x
// here within minutes) slows both alike. The ratio is the median of the blocks' ratios of
// medians; a block keeps the other runtime's thread pool idle (no spinning beside it) except
// for its first run, which is dropped.
struct Paired {
  Timing model, peer;
  double ratio = 0;
};

template <typename FnA, typename FnB>
Paired time_paired(FnA&& model, FnB&& peer, int warmup, int runs) {
  constexpr int kBlock = 6;
  for (int i = 0; i < warmup; ++i) {
    model();
    peer();
  }
  std::vector<double> all_model, all_peer, ratios;
  const int blocks = std::max(3, (runs + kBlock - 2) / (kBlock - 1));
  for (int b = 0; b < blocks; ++b) {
    std::vector<double> bm, bp;
    for (int i = 0; i < kBlock; ++i) {
      const double ms = time_once(peer);
      if (i > 0) bp.push_back(ms);
    }
    for (int i = 0; i < kBlock; ++i) {
      const double ms = time_once(model);
      if (i > 0) bm.push_back(ms);
    }
    ratios.push_back(summarise(bm).median / summarise(bp).median);
    all_model.insert(all_model.end(), bm.begin(), bm.end());
    all_peer.insert(all_peer.end(), bp.begin(), bp.end());
  }
  return {summarise(all_model), summarise(all_peer), summarise(ratios).median};
}

struct Options {
  std::vector<std::string> presets;
  std::vector<std::string> configs;
  std::string model;
  std::vector<std::string> layouts = {"nchw", "nhwc"};
  std::vector<std::string> precisions = {"fp32"};
  std::vector<std::string> sizes;  // empty: each network's own input size
  std::vector<int> threads = {2};
  int runs = 30, warmup = 5, batch = 1;
  bool json = false, profile = false, tracker = false;
  std::string peer_onnx, peer_name = "peer", peer_size = "640x480";
  bool peer_only = false;  // the child's mode: time the peer alone, print JSON
};

// The peer's median per thread count in a process of its own, where no LibTorch work runs: in
// this process OpenCV's thread pool and LibTorch's OpenMP threads share the cores, and RFB-640
// measured 31-55 ms here against 22 ms alone on one machine (a ratio that flatters us).
// Runs this program again (`bench --peer-only`) and reads its JSON rows.
std::map<int, double> time_peer_alone(const Options& o) {
  // This program's own path (popen's shell would be /proc/self/exe to itself).
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec || self.find('\'') != std::string::npos) {
    throw std::runtime_error("cannot find this program's path to time the peer alone");
  }
  std::string cmd = "'" + self + "' bench --peer-only --json --peer-onnx '" + o.peer_onnx +
                    "' --peer-size " + o.peer_size + " --runs " + std::to_string(o.runs) +
                    " --warmup " + std::to_string(o.warmup) + " --threads ";
  for (size_t i = 0; i < o.threads.size(); ++i)
    cmd += (i ? "," : "") + std::to_string(o.threads[i]);
  if (o.peer_onnx.find('\'') != std::string::npos) {
    throw CLI::ValidationError("--peer-onnx", "a path with a single quote cannot be passed on");
  }
  std::map<int, double> medians;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot start the peer's own process: " + cmd);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  if (pclose(pipe) != 0) throw std::runtime_error("the peer's own process failed: " + cmd);
  const auto rows = nlohmann::json::parse(out, nullptr, false);
  if (!rows.is_array()) throw std::runtime_error("the peer's own process printed no rows");
  for (const auto& r : rows) medians[r["threads"].get<int>()] = r["latency_ms_median"];
  return medians;
}

// The size the network meets in `detect`, `eval` and the element: the letterbox of a "fit"
// model, or the paper's resize of a 4:3 picture (800 x 1067) for "short_long". A speed
// comparison at any other size says little about the shipped model.
std::string own_size(const ModelConfig& c) {
  const auto& in = c.input;
  if (in.resize == "fit" && in.width > 0 && in.height > 0) {
    return std::to_string(in.width) + "x" + std::to_string(in.height);
  }
  const int w = std::min(in.long_side, in.short_side * 4 / 3);
  return std::to_string(w) + "x" + std::to_string(in.short_side);
}

// Every (a, b) pair, a-major.
std::vector<std::pair<std::string, std::string>> combinations(const std::vector<std::string>& a,
                                                              const std::vector<std::string>& b) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& x : a) {
    for (const auto& y : b) out.emplace_back(x, y);
  }
  return out;
}

// Tracker cost per frame: N objects walking on a grid (each moving 2 px/frame, some missed
// now and then, a few new each frame), update() timed over 300 frames after 30 of warm-up.
void run_tracker_bench(const Options& o) {
  std::printf("\n%8s %14s %14s %10s\n", "objects", "median us", "p90 us", "live tracks");
  nlohmann::json rows = nlohmann::json::array();
  for (int n : {5, 50, 200}) {
    Tracker tracker;
    std::vector<double> us;
    size_t live = 0;
    for (int f = 0; f < 330; ++f) {
      std::vector<Detection> dets;
      for (int i = 0; i < n; ++i) {
        if ((i + f) % 17 == 0) continue;  // missed this frame
        Detection d;
        d.x1 = static_cast<float>((i % 20) * 60 + 2 * f % 40);
        d.y1 = static_cast<float>((i / 20) * 60 + f % 7);
        d.x2 = d.x1 + 40;
        d.y2 = d.y1 + 40;
        d.score = (i % 5 == 0) ? 0.3f : 0.9f;
        dets.push_back(d);
      }
      const auto t0 = std::chrono::steady_clock::now();
      tracker.update(dets);
      const auto t1 = std::chrono::steady_clock::now();
      if (f >= 30) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      live = tracker.live_tracks();
    }
    std::sort(us.begin(), us.end());
    const double med = us[us.size() / 2], p90 = us[us.size() * 9 / 10];
    std::printf("%8d %14.1f %14.1f %10zu\n", n, med, p90, live);
    rows.push_back({{"objects", n}, {"median_us", med}, {"p90_us", p90}});
  }
  if (o.json) std::cout << rows.dump(2) << "\n";
}

void run(const Options& o) {
  if (o.tracker) {
    run_tracker_bench(o);
    return;
  }
  struct Entry {
    std::string label;
    ModelConfig config;
    AutoAssign model{nullptr};
  };
  std::vector<Entry> entries;
  if (o.peer_only) {
    // No model: the peer's process runs no LibTorch work at all.
  } else if (!o.model.empty() || (o.configs.empty() && o.presets.empty() &&
                                  std::filesystem::exists(default_model().path))) {
    const std::string path = o.model.empty() ? default_model().path : o.model;
    auto m = load_model(path);
    entries.push_back({path, m->config(), m});
  } else if (!o.configs.empty()) {
    for (const auto& path : o.configs) {
      auto c = ModelConfig::from_file(path);
      entries.push_back({o.configs.size() > 1 ? path : c.name, c, AutoAssign(c)});
    }
  } else {
    for (const auto& p : o.presets.empty() ? std::vector<std::string>{"face-rt"} : o.presets) {
      auto c = ModelConfig::preset(p);
      entries.push_back({p, c, AutoAssign(c)});
    }
  }
  nlohmann::json rows = nlohmann::json::array();
  cv::dnn::Net net;
  cv::Mat blob;
  std::vector<std::string> peer_outputs;
  auto peer_forward = [&] {
    std::vector<cv::Mat> outs;
    net.setInput(blob);
    net.forward(outs, peer_outputs);
  };
  if (!o.peer_onnx.empty()) {
    const Size ps = size_option(o.peer_size);
    net = cv::dnn::readNetFromONNX(o.peer_onnx);
    blob = cv::Mat({1, 3, ps.h, ps.w}, CV_32F);
    cv::randu(blob, -1.0, 1.0);
    peer_outputs = net.getUnconnectedOutLayersNames();
    for (int t : o.threads) {
      cv::setNumThreads(t);
      auto timing = time_runs(peer_forward, o.warmup, o.runs);
      rows.push_back({{"model", o.peer_name},
                      {"runtime", "opencv-dnn"},
                      {"width", ps.w},
                      {"height", ps.h},
                      {"threads", t},
                      {"batch", 1},
                      {"latency_ms_median", timing.median},
                      {"latency_ms_p90", timing.p90},
                      {"fps", 1000.0 / timing.median}});
    }
  }
  if (o.peer_only) {
    std::cout << rows.dump() << "\n";
    return;
  }
  // Alone, before and after this process's runs (the mean of the two brackets a drift of the
  // machine); same-process figures stay beside it.
  std::map<int, double> alone;
  if (!o.peer_onnx.empty()) alone = time_peer_alone(o);
  for (const auto& layout : o.layouts) {
    if (layout != "nchw" && layout != "nhwc") {
      throw CLI::ValidationError("--layout", "expected nchw or nhwc, got '" + layout + "'");
    }
  }
  std::vector<std::string> precisions;  // resolved: auto becomes what it chose
  for (const auto& p : o.precisions) {
    try {
      precisions.push_back(resolve_precision(p, "cpu"));
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--precision", e.what());
    }
  }
  for (auto& e : entries) {
    e.model->prepare_for_inference();
    for (const auto& [precision, layout] : combinations(precisions, o.layouts)) {
      e.model->set_precision(precision == "bf16" ? torch::kBFloat16 : torch::kFloat);
      e.model->set_channels_last(layout == "nhwc");
      for (const auto& size_text :
           o.sizes.empty() ? std::vector<std::string>{own_size(e.config)} : o.sizes) {
        const Size s = size_option(size_text);
        const int d = e.config.input.size_divisor;
        const int64_t w = (s.w + d - 1) / d * d, h = (s.h + d - 1) / d * d;
        torch::manual_seed(0);
        auto input = torch::randn({o.batch, 3, h, w});
        auto forward = [&] {
          c10::InferenceMode guard;
          auto out = e.model->forward(input);
          (void)out;
        };
        torch::set_num_threads(o.threads.front());
        double flops = 0;
        {
          FlopCounter counter;
          forward();
          flops = counter.flops();
        }
        Profile prof;
        if (o.profile) prof = profile(forward);
        for (int t : o.threads) {
          torch::set_num_threads(t);
          Timing timing;
          std::optional<Paired> paired;
          if (o.peer_onnx.empty()) {
            timing = time_runs(forward, o.warmup, o.runs);
          } else {
            cv::setNumThreads(t);
            paired = time_paired(forward, peer_forward, o.warmup, o.runs);
            timing = paired->model;
          }
          nlohmann::json row = {{"model", e.label},
                                {"runtime", "libtorch"},
                                {"layout", layout},
                                {"precision", precision},
                                {"width", w},
                                {"height", h},
                                {"threads", t},
                                {"batch", o.batch},
                                {"latency_ms_median", timing.median},
                                {"latency_ms_p90", timing.p90},
                                {"fps", 1000.0 * o.batch / timing.median},
                                {"gflops", flops / 1e9},
                                {"gflops_per_s", flops / 1e9 / (timing.median / 1000.0)}};
          if (paired) {
            row["ratio_vs_peer"] = paired->ratio;
            row["peer_latency_ms_median"] = paired->peer.median;
          }
          rows.push_back(row);
        }
        if (o.profile && !o.json) {
          std::printf(
              "\nprofile of %s at %lldx%lld %s, %d thread(s), one forward pass (%.1f ms "
              "under the profiler):\n",
              e.label.c_str(), static_cast<long long>(w), static_cast<long long>(h), layout.c_str(),
              o.threads.front(), prof.wall_ms);
          std::printf("%-40s %7s %10s %10s\n", "op", "calls", "self ms", "total ms");
          for (size_t i = 0; i < prof.ops.size() && i < 15; ++i) {
            const auto& op = prof.ops[i];
            std::printf("%-40s %7lld %10.2f %10.2f\n", op.name.c_str(),
                        static_cast<long long>(op.calls), op.self_ms, op.total_ms);
          }
          // Where the convolutions went: oneDNN, or LibTorch's im2col + BLAS fallback (taken
          // for batch 1 when the input has <= 20480 elements, i.e. small maps).
          for (const auto& op : prof.ops) {
            if (op.name != "aten::_slow_conv2d_forward" && op.name != "aten::mkldnn_convolution") {
              continue;
            }
            std::printf("%s input shapes:", op.name.c_str());
            for (const auto& [shape, calls] : op.input_shapes) {
              std::printf(" %s x%lld", shape.c_str(), static_cast<long long>(calls));
            }
            std::printf("\n");
          }
        }
      }
    }
  }
  if (!alone.empty()) {
    const auto after = time_peer_alone(o);
    for (auto& [t, ms] : alone) {
      if (after.count(t)) ms = (ms + after.at(t)) / 2;
    }
    for (auto& r : rows) {
      const int t = r["threads"].get<int>();
      if (r["runtime"] == "libtorch" && alone.count(t)) {
        r["peer_alone_latency_ms_median"] = alone.at(t);
        r["ratio_vs_peer_alone"] = r["latency_ms_median"].get<double>() / alone.at(t);
      }
    }
  }
  if (o.json) {
    std::cout << rows.dump(2) << "\n";
    return;
  }
  size_t name_width = 14;
  for (const auto& r : rows)
    name_width = std::max(name_width, r["model"].get<std::string>().size());
  const int nw = static_cast<int>(name_width);
  const auto f = cpu_features();
  std::printf("\nCPU: AVX-512 %s, AVX512-BF16 %s, AMX-BF16 %s (precision auto = %s)\n",
              f.avx512_core ? "yes" : "no", f.avx512_bf16 ? "yes" : "no", f.amx_bf16 ? "yes" : "no",
              resolve_precision("auto", "cpu").c_str());
  std::printf("\n%-*s %-10s %-4s %-6s %-10s %3s %5s %10s %10s %8s %8s %9s %9s %8s %9s %8s\n", nw,
              "model", "runtime", "prec", "layout", "input", "thr", "batch", "median ms", "p90 ms",
              "fps", "GFLOPs", "GFLOP/s", "vs peer", "peer ms", "vs alone", "alone ms");
  for (const auto& r : rows) {
    const std::string input =
        std::to_string(r["width"].get<int>()) + "x" + std::to_string(r["height"].get<int>());
    std::printf("%-*s %-10s %-4s %-6s %-10s %3d %5d %10.2f %10.2f %8.1f", nw,
                r["model"].get<std::string>().c_str(), r["runtime"].get<std::string>().c_str(),
                r.value("precision", std::string("fp32")).c_str(),
                r.value("layout", std::string("-")).c_str(), input.c_str(), r["threads"].get<int>(),
                r["batch"].get<int>(), r["latency_ms_median"].get<double>(),
                r["latency_ms_p90"].get<double>(), r["fps"].get<double>());
    if (r.contains("gflops")) {
      std::printf(" %8.2f %9.1f", r["gflops"].get<double>(), r["gflops_per_s"].get<double>());
    } else {
      std::printf(" %8s %9s", "-", "-");
    }
    if (r.contains("ratio_vs_peer")) {
      std::printf(" %8.2fx %8.2f", r["ratio_vs_peer"].get<double>(),
                  r["peer_latency_ms_median"].get<double>());
    }
    if (r.contains("ratio_vs_peer_alone")) {
      std::printf(" %8.2fx %8.2f", r["ratio_vs_peer_alone"].get<double>(),
                  r["peer_alone_latency_ms_median"].get<double>());
    }
    std::printf("\n");
  }
  if (!o.peer_onnx.empty()) {
    std::printf(
        "\nvs peer: each row timed in alternating blocks with the peer in this process (5 runs "
        "each after one dropped); the median of the blocks' ratios, the peer's median beside it. "
        "vs alone: against the peer timed in a process of its own (no LibTorch threads beside "
        "OpenCV's), the mean of a run before and one after this process's: the fair figure.\n");
  }
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench",
      "Forward-pass latency (median, p90 after warm-up), frames/s, GFLOPs and achieved GFLOP/s "
      "of presets or a model on random input of the given network sizes");
  auto o = std::make_shared<Options>();
  cmd->add_option("--preset", o->presets, "preset(s) to measure (random weights)")->delimiter(',');
  cmd->add_option("--config", o->configs, "model config JSON file(s) instead of presets")
      ->delimiter(',');
  cmd->add_option("--model", o->model,
                  "a model file instead of presets; with neither: " + default_model_description() +
                      " when it exists, else preset face-rt");
  cmd->add_option(
         "--size", o->sizes,
         "network input size(s) WxH, rounded up to the size divisor (default: each network's own, "
         "e.g. 640x480 for face-rt)")
      ->delimiter(',');
  cmd->add_option("--layout", o->layouts,
                  "memory layout(s) of weights and activations: nchw, nhwc (channels-last)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--precision", o->precisions,
                  "network precision(s): fp32, bf16, auto (bf16 where the CPU has AMX or "
                  "AVX512-BF16)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "LibTorch intra-op thread count(s)")->delimiter(',');
  cmd->add_option("--runs", o->runs, "timed runs per row")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->warmup, "untimed runs first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o->batch, "images per forward pass")->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "print rows as JSON (latency_ms_median, ...)");
  cmd->add_flag("--profile", o->profile, "print LibTorch's profile of one forward pass");
  cmd->add_flag("--tracker", o->tracker,
                "instead: the tracker's cost per frame (autoassigntrack) at 5, 50 and 200 objects");
  cmd->add_option("--peer-onnx", o->peer_onnx,
                  "an ONNX model to time through OpenCV DNN in the same run (e.g. "
                  "../shared/peers/version-RFB-640.onnx)");
  cmd->add_option("--peer-name", o->peer_name, "label of the peer row");
  cmd->add_option("--peer-size", o->peer_size, "peer input WxH (default 640x480)");
  // The child of --peer-onnx: the peer timed alone, in a process where no LibTorch work runs.
  cmd->add_flag("--peer-only", o->peer_only, "time only the --peer-onnx model (JSON rows)")
      ->group("");
  cmd->callback([o] { run(*o); });
}

}  // namespace autoassign::cli
