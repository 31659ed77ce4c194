// SPDX-License-Identifier: MIT
#include "autoassign/train/engine/hooks.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/train/engine/state.h"

namespace autoassign {
namespace {

std::string format_duration(double s) {
  const int64_t t = static_cast<int64_t>(s);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

}  // namespace

double learning_rate(const TrainOptions& o, int64_t it) {
  double lr = o.lr;
  if (o.schedule == "cosine") {
    lr = o.lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(it) / o.iterations));
  } else {
    for (int s : o.steps) {
      if (it >= s) lr *= o.gamma;
    }
  }
  if (it < o.warmup_iterations) {
    // Linear warm-up from warmup_factor x lr (detectron2's WarmupMultiStepLR).
    const double alpha = static_cast<double>(it) / o.warmup_iterations;
    lr *= o.warmup_factor * (1.0 - alpha) + alpha;
  }
  return lr;
}

void LrScheduleHook::before_step(TrainContext& ctx) {
  ctx.lr = learning_rate(ctx.options, ctx.iteration);
  for (auto& g : ctx.optimizer.param_groups()) {
    static_cast<torch::optim::SGDOptions&>(g.options()).lr(ctx.lr);
  }
}

EmaHook::EmaHook(const TrainContext& ctx, const torch::Device& device) {
  if (ctx.options.ema <= 0 || !ctx.main_rank) return;
  average_.emplace(ctx.config);
  (*average_)->to(device);
  if (ctx.options.channels_last) (*average_)->set_channels_last(true);
  copy_weights(ctx.model, *average_);
}

void EmaHook::after_step(TrainContext& ctx) {
  if (average_) {
    update_average(ctx.model, *average_, ctx.options.ema, ctx.options.ema_ramp, ctx.iteration + 1);
  }
}

void CheckpointHook::after_step(TrainContext& ctx) {
  if (!ctx.main_rank) return;
  const auto& o = ctx.options;
  const int64_t done = ctx.iteration + 1;
  if (done % o.checkpoint_every == 0 || ctx.last || ctx.stop) {
    save_checkpoint(o.output_dir, ctx.model, ctx.optimizer, done, options_json_, ema_.average());
  }
  if (o.snapshot_every > 0 && done % o.snapshot_every == 0) {
    AutoAssign* average = ema_.average();
    save_model(o.output_dir + "/model_iter_" + std::to_string(done) + ".pt",
               average ? *average : ctx.model);
  }
}

void LogHook::before_train(TrainContext& ctx) {
  t_start_ = t_window_ = shown_at_ = Clock::now();
  if (!ctx.main_rank) return;
  const auto& o = ctx.options;
  log_.open(o.output_dir + "/log.jsonl", std::ios::app);
  tty_ = !o.quiet && isatty(STDOUT_FILENO);
  if (!o.quiet) {
    std::printf("training %s on %s: iterations %lld..%d, batch %d x %d process(es), %d threads\n",
                ctx.config.name.c_str(), ctx.dataset_summary.c_str(),
                static_cast<long long>(ctx.start), o.iterations, o.batch_size,
                ctx.comm.world_size(), ctx.threads);
    std::fflush(stdout);
  }
}

// The TTY bar, redrawn every iteration with the last log window's rate and its ETA counting
// down.
void LogHook::draw_bar(const TrainContext& ctx, double ips, double eta) {
  const auto& o = ctx.options;
  const int64_t it = ctx.iteration;
  const int width = 30;
  const int filled = static_cast<int>(width * (it + 1) / o.iterations);
  auto loss = [&](const char* k) {
    auto f = ctx.losses.find(k);
    return f == ctx.losses.end() ? 0.0 : f->second;
  };
  std::printf(
      "\r[%s%s] ep %lld it %lld/%d  loss %.4f (pos %.4f neg %.4f ctr %.4f)  %.1f img/s  "
      "ETA %s \033[K",
      std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
      static_cast<long long>(ctx.maker.epoch_of(it)), static_cast<long long>(it + 1), o.iterations,
      loss("loss"), loss("loss_pos"), loss("loss_neg"), loss("loss_center"), ips,
      format_duration(std::max(0.0, eta)).c_str());
  std::fflush(stdout);
}

void LogHook::after_step(TrainContext& ctx) {
  const auto& o = ctx.options;
  const int64_t it = ctx.iteration;
  window_images_ += o.batch_size * ctx.comm.world_size();
  const bool log_now = (it + 1) % o.log_every == 0 || ctx.last;
  if (tty_ && !log_now) draw_bar(ctx, shown_ips_, shown_eta_ - seconds_since(shown_at_));
  if (!ctx.main_rank || !log_now) return;
  auto& losses = ctx.losses;
  const double window_s = seconds_since(t_window_);
  const double ips = window_images_ / std::max(window_s, 1e-9);
  const double eta =
      (o.iterations - it - 1) * o.batch_size * ctx.comm.world_size() / std::max(ips, 1e-9);
  shown_ips_ = ips;
  shown_eta_ = eta;
  shown_at_ = Clock::now();
  nlohmann::json row = {{"iteration", it + 1},
                        {"epoch", ctx.maker.epoch_of(it)},
                        {"lr", ctx.lr},
                        {"loss", losses["loss"]},
                        {"loss_pos", losses["loss_pos"]},
                        {"loss_neg", losses["loss_neg"]},
                        {"loss_center", losses["loss_center"]},
                        {"images_per_s", ips},
                        {"eta_s", eta},
                        {"elapsed_s", seconds_since(t_start_)}};
  // Terms beyond the AutoAssign three (loss_reg, a hook's distillation term) as they come.
  for (const auto& [k, v] : losses) {
    if (!row.contains(k)) row[k] = v;
  }
  log_ << row.dump() << "\n";
  log_.flush();
  if (!o.quiet) {
    if (tty_) {
      draw_bar(ctx, ips, eta);
    } else {
      std::printf(
          "it %lld/%d ep %lld lr %.5f loss %.4f pos %.4f neg %.4f ctr %.4f %.1f img/s ETA %s\n",
          static_cast<long long>(it + 1), o.iterations,
          static_cast<long long>(ctx.maker.epoch_of(it)), ctx.lr, losses["loss"],
          losses["loss_pos"], losses["loss_neg"], losses["loss_center"], ips,
          format_duration(eta).c_str());
    }
    std::fflush(stdout);
  }
  t_window_ = Clock::now();
  window_images_ = 0;
}

void LogHook::after_train(TrainContext& ctx) {
  if (ctx.stop && ctx.main_rank && !ctx.options.quiet) {
    std::printf("\ninterrupted: checkpoint written at iteration %lld; --resume continues\n",
                static_cast<long long>(ctx.iteration + 1));
  }
  if (tty_) std::printf("\n");
}

void StepTimerHook::after_step(TrainContext& ctx) {
  if (ctx.iteration == ctx.start) return;  // the first step includes one-off allocations
  sum_.data += ctx.times.data;
  sum_.forward += ctx.times.forward;
  sum_.loss += ctx.times.loss;
  sum_.backward += ctx.times.backward;
  sum_.total += ctx.times.total;
  ++timed_;
}

void StepTimerHook::after_train(TrainContext& ctx) {
  if (timed_ == 0) return;
  const double t = std::max(sum_.total, 1e-9);
  ctx.result.images_per_second = timed_ * ctx.options.batch_size / t;
  ctx.result.loss_share = sum_.loss / t;
  if (ctx.main_rank && !ctx.options.quiet) {
    std::printf(
        "step time: data wait %.1f%%, forward %.1f%%, assignment/loss %.1f%%, backward+update "
        "%.1f%%; %.2f images/s per process\n",
        100 * sum_.data / t, 100 * sum_.forward / t, 100 * sum_.loss / t, 100 * sum_.backward / t,
        ctx.result.images_per_second);
  }
}

}  // namespace autoassign
