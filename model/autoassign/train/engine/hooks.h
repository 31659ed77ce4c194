// SPDX-License-Identifier: MIT
// What runs around each training step, as hooks (detectron2's engine/hooks.py in shape): the
// learning-rate schedule, the weight average, checkpoints and snapshots, the JSON-lines log
// and progress, the step timer. The loop calls every hook at each point in order; a new
// training feature (a teacher's distillation term: add_losses) is one more hook.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/head.h"
#include "autoassign/infer/modeling/model.h"
#include "autoassign/train/data/batches.h"
#include "autoassign/train/distributed.h"
#include "autoassign/train/engine/options.h"

namespace autoassign {

struct TrainResult {
  int64_t iterations_done = 0;
  bool interrupted = false;
  std::map<std::string, double> last_losses;
  double images_per_second = 0;
  double loss_share = 0;  ///< forward time of the assignment/loss over the step time
  double peak_rss_mb = 0;
};

/// Seconds since `t0` on the steady clock (the loop's and the hooks' timings).
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Seconds of one step's parts, as the loop measures them.
struct StepTimes {
  double data = 0, forward = 0, loss = 0, backward = 0, total = 0;
};

/// What hooks see: the run's objects, and the step in progress.
struct TrainContext {
  const ModelConfig& config;
  const TrainOptions& options;  ///< validated
  Communicator& comm;
  AutoAssign& model;
  torch::optim::SGD& optimizer;
  const BatchMaker& maker;
  const std::string& dataset_summary;
  int threads = 1;
  bool main_rank = true;
  int64_t start = 0, end = 0;  ///< this run's iterations: [start, end)
  // The current step (before_step and after).
  int64_t iteration = 0;
  double lr = 0;
  std::map<std::string, double> losses{};  ///< after_step: every term, and "loss" (their sum)
  bool last = false;                       ///< this run's last step
  bool stop = false;  ///< a stop was asked for on some rank: every rank checkpoints and leaves
  StepTimes times{};
  TrainResult result{};
};

class TrainHook {
 public:
  virtual ~TrainHook() = default;
  virtual void before_train(TrainContext&) {}
  virtual void before_step(TrainContext&) {}
  /// Completes a batch on loader thread `worker` (0 .. loader_threads - 1) while steps run: a
  /// teacher's pass. Must touch only that worker's state.
  virtual void prepare_batch(Batch&, int /*worker*/) {}
  /// Terms to add to this step's loss (a distillation term), each a scalar tensor that the
  /// total sums and backward() differentiates.
  virtual void add_losses(TrainContext&, const Batch&, const HeadOutput&,
                          std::map<std::string, torch::Tensor>&) {}
  virtual void after_step(TrainContext&) {}
  virtual void after_train(TrainContext&) {}
};

/// The learning rate at iteration `it`: step or cosine, after a linear warm-up from
/// warmup_factor x lr (detectron2's WarmupMultiStepLR / WarmupCosineLR).
double learning_rate(const TrainOptions& o, int64_t it);

/// Sets each step's learning rate on every parameter group.
class LrScheduleHook : public TrainHook {
 public:
  void before_step(TrainContext& ctx) override;
};

/// TrainOptions::ema: an exponential moving average of the weights and BatchNorm statistics,
/// on rank 0 (every rank holds the same weights; only rank 0 writes files).
class EmaHook : public TrainHook {
 public:
  /// Made before a resume, so that load_checkpoint can fill it.
  EmaHook(const TrainContext& ctx, const torch::Device& device);
  void after_step(TrainContext& ctx) override;
  /// The average, or null when the run keeps none (ema 0, or not rank 0).
  AutoAssign* average() { return average_ ? &*average_ : nullptr; }

 private:
  std::optional<AutoAssign> average_;
};

/// Rank 0: checkpoint.pt and model.pt every checkpoint_every iterations, at the end and when
/// stopped; model_iter_N.pt every snapshot_every. Model files hold the average when there is one.
class CheckpointHook : public TrainHook {
 public:
  CheckpointHook(nlohmann::json options_json, EmaHook& ema)
      : options_json_(std::move(options_json)), ema_(ema) {}
  void after_step(TrainContext& ctx) override;

 private:
  nlohmann::json options_json_;
  EmaHook& ema_;
};

/// Rank 0: the opening line, one JSON line in OUT/log.jsonl every log_every iterations (and at
/// the end), the same as text, or a progress bar redrawn every step on a TTY; the closing line
/// when stopped.
class LogHook : public TrainHook {
 public:
  void before_train(TrainContext& ctx) override;
  void after_step(TrainContext& ctx) override;
  void after_train(TrainContext& ctx) override;

 private:
  using Clock = std::chrono::steady_clock;
  void draw_bar(const TrainContext& ctx, double ips, double eta);
  std::ofstream log_;
  bool tty_ = false;
  Clock::time_point t_start_, t_window_, shown_at_;
  int64_t window_images_ = 0;
  double shown_ips_ = 0, shown_eta_ = 0;  // what the bar shows between log lines
};

/// Step-time shares (data wait, forward, assignment/loss, backward + update) and images/s, over
/// every step but the first (one-off allocations); printed at the end by rank 0.
class StepTimerHook : public TrainHook {
 public:
  void after_step(TrainContext& ctx) override;
  void after_train(TrainContext& ctx) override;

 private:
  StepTimes sum_;
  int64_t timed_ = 0;
};

}  // namespace autoassign
