// SPDX-License-Identifier: MIT
#include "autoassign/train/engine/trainer.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <ATen/autocast_mode.h>

#include "autoassign/infer/device.h"
#include "autoassign/train/assign/loss.h"
#include "autoassign/train/teacher/distill.h"

namespace autoassign {

std::atomic<bool> g_stop_training{false};

namespace {

using Clock = std::chrono::steady_clock;

// bf16 CPU autocast for a scope, off again (and its cast cache cleared) however it is left.
struct CpuAutocast {
  CpuAutocast() {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  ~CpuAutocast() {
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  CpuAutocast(const CpuAutocast&) = delete;
  CpuAutocast& operator=(const CpuAutocast&) = delete;
};

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// "norm" and the reparam branches' "norm_1x1" / "norm_id": no weight decay.
bool is_norm_parameter(const std::string& name) {
  return name.find(".norm.") != std::string::npos || name.find(".norm_") != std::string::npos;
}

torch::optim::SGD make_optimizer(AutoAssign& model, const TrainOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    (is_norm_parameter(p.key()) ? no_decay : decay).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decay, std::make_unique<torch::optim::SGDOptions>(
                 torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::SGDOptions>(
                          torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(0)));
  return torch::optim::SGD(groups, torch::optim::SGDOptions(o.lr));
}

// The network's outputs for a batch: under bf16 autocast the network only, its outputs back
// in fp32 before the assignment and loss (AUTOASSIGN.md 3.9: they need fp32 range and
// precision).
HeadOutput forward(AutoAssign& model, const torch::Tensor& images, bool bf16) {
  if (!bf16) return model->forward(images);
  HeadOutput out;
  {
    CpuAutocast autocast;
    out = model->forward(images);
  }
  for (auto* outputs : {&out.cls_logits, &out.obj_logits, &out.distances}) {
    for (auto& t : *outputs) t = t.to(torch::kFloat);
  }
  return out;
}

Batch to_device(Batch batch, const torch::Device& device) {
  if (device.is_cpu()) return batch;
  batch.images = batch.images.to(device, /*non_blocking=*/true);
  for (auto& t : batch.targets) {
    t.boxes = t.boxes.to(device);
    t.labels = t.labels.to(device);
    t.ignore = t.ignore.to(device);
  }
  for (auto& t : batch.teacher_scores) {
    if (t.defined()) t = t.to(device);
  }
  return batch;
}

// Checks the options (every one, before anything is made), the device and the precision;
// makes the output folder and sets the threads and the seed. Returns the torch device.
torch::Device prepare_run(TrainOptions& o, const ModelConfig& config, int* threads) {
  validate_train_options(o, config);
  // A CUDA request on a CPU-only LibTorch fails here, naming the device.
  const torch::Device device = torch_device(Device::parse(o.device));
  if (o.precision == "bf16") {
    // The trainer's autocast is LibTorch's CPU one; on CUDA it would leave the run in fp32
    // while the log said bf16.
    if (device.is_cuda())
      throw std::invalid_argument("precision bf16 is for CPU training; on CUDA train in fp32");
    resolve_precision("bf16", "cpu");  // no AVX-512, or oneDNN capped below it: says which
  }
  std::filesystem::create_directories(o.output_dir);
  *threads = resolve_threads(o.threads);
  torch::set_num_threads(*threads);
  torch::manual_seed(o.seed);
  return device;
}

// The network to train: initialised (or from --init), on the device, in training mode and the
// run's memory layout, before the optimiser exists (its momentum then takes the same layout).
AutoAssign make_model(const ModelConfig& config, const TrainOptions& o, const torch::Device& device,
                      bool main_rank) {
  AutoAssign model(config);
  if (!o.init.empty()) {  // a resumed run's checkpoint overrides it
    const auto left = init_from_model(model, o.init, o.init_grow);
    if (main_rank && !o.quiet) {
      std::printf("init: weights from %s%s", o.init.c_str(),
                  o.init_grow ? ", widened to this run's channels" : "");
      if (!left.empty()) {
        std::printf(" (the class count differs: %zu classifier tensors re-initialised)",
                    left.size());
      }
      std::printf("\n");
    }
  }
  model->to(device);
  model->train();
  if (o.channels_last) model->set_channels_last(true);
  return model;
}

// Forward, loss (with the hooks' terms), backward, gradient average and SGD step of one batch;
// the loss terms and the times go to ctx.
void run_step(TrainContext& ctx, const Batch& batch, const AssignOptions& assign,
              const std::vector<std::shared_ptr<TrainHook>>& hooks, Clock::time_point t0) {
  auto& model = ctx.model;
  const auto& o = ctx.options;
  const auto t1 = Clock::now();
  const HeadOutput out = forward(model, batch.images, o.precision == "bf16");
  ctx.times.forward = seconds_since(t1);
  const auto t2 = Clock::now();
  Communicator& comm = ctx.comm;
  auto losses = autoassign_loss(
      out, model->strides(), batch.targets, *model->center_prior,
      [&comm](double v) { return comm.average(v); }, assign);
  for (auto& h : hooks) h->add_losses(ctx, batch, out, losses);
  ctx.times.loss = seconds_since(t2);
  auto total = torch::zeros({}, losses["loss_pos"].options());
  for (const auto& [name, term] : losses) total = total + term;
  ctx.losses.clear();
  for (const auto& [k, v] : losses) ctx.losses[k] = v.item<double>();
  ctx.losses["loss"] = total.item<double>();
  if (!std::isfinite(ctx.losses["loss"])) {
    std::string terms;
    for (const auto& [name, value] : ctx.losses) {
      terms += (terms.empty() ? "" : ", ") + name + " " + std::to_string(value);
    }
    throw std::runtime_error("loss is not finite at iteration " + std::to_string(ctx.iteration) +
                             " (" + terms +
                             "); lower the learning rate or enable gradient clipping");
  }
  const auto t3 = Clock::now();
  ctx.optimizer.zero_grad();
  total.backward();
  if (comm.world_size() > 1) {
    std::vector<torch::Tensor> grads;
    for (auto& p : model->parameters()) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    comm.average(grads);
  }
  if (o.clip_grad_norm > 0)
    torch::nn::utils::clip_grad_norm_(model->parameters(), o.clip_grad_norm);
  ctx.optimizer.step();
  ctx.times.backward = seconds_since(t3);
  ctx.times.total = seconds_since(t0);
}

}  // namespace

TrainResult train(const ModelConfig& config, const Dataset& dataset, const TrainOptions& in_opts,
                  Communicator& comm, const std::vector<std::shared_ptr<TrainHook>>& extra_hooks) {
  TrainOptions o = in_opts;
  int threads = 1;
  const torch::Device device = prepare_run(o, config, &threads);
  const bool main_rank = comm.rank() == 0;
  AutoAssign model = make_model(config, o, device, main_rank);
  torch::optim::SGD opt = make_optimizer(model, o);
  BatchMaker maker(config, dataset, o, comm.rank(), comm.world_size());
  const std::string summary = dataset.summary();
  TrainContext ctx{config, o, comm, model, opt, maker, summary};
  ctx.threads = threads;
  ctx.main_rank = main_rank;

  // The hooks, in the order they run at each point.
  auto ema = std::make_shared<EmaHook>(ctx, device);  // before a resume fills it
  const nlohmann::json options_json = train_options_to_json(o);
  std::vector<std::shared_ptr<TrainHook>> hooks = {
      std::make_shared<LrScheduleHook>(), ema, std::make_shared<StepTimerHook>(),
      std::make_shared<LogHook>(), std::make_shared<CheckpointHook>(options_json, *ema)};
  if (!o.teacher.empty()) {
    hooks.push_back(std::make_shared<TeacherHook>(o, config.input, model->strides()));
  }
  hooks.insert(hooks.end(), extra_hooks.begin(), extra_hooks.end());

  // Only rank 0 writes checkpoints, so only rank 0 reads one; every rank then starts from its
  // weights (and, on resume, its iteration and momentum).
  int64_t start = 0;
  if (o.resume && main_rank) {
    start = load_checkpoint(o.output_dir, model, opt, options_json, ema->average());
  }
  start = broadcast_start(comm, model, opt, start, o.resume);
  ctx.start = start;
  ctx.end = o.stop_after > 0 ? std::min<int64_t>(o.iterations, start + o.stop_after) : o.iterations;

  AssignOptions assign;
  assign.force_topk = o.force_topk;
  assign.reg_weight = o.reg_weight;
  for (auto& h : hooks) h->before_train(ctx);
  Prefetcher prefetch(maker, ctx.start, ctx.end, std::max(1, o.loader_threads),
                      2 * std::max(1, o.loader_threads), [&hooks](Batch& b, int worker) {
                        for (auto& h : hooks) h->prepare_batch(b, worker);
                      });
  for (int64_t it = ctx.start; it < ctx.end; ++it) {
    ctx.iteration = it;
    ctx.last = it + 1 == ctx.end;
    const auto t0 = Clock::now();
    const Batch batch = to_device(prefetch.get(it), device);
    ctx.times.data = seconds_since(t0);
    for (auto& h : hooks) h->before_step(ctx);
    run_step(ctx, batch, assign, hooks, t0);
    ctx.result.last_losses = ctx.losses;
    ctx.result.iterations_done = it + 1 - ctx.start;
    // Every rank must leave at the same iteration, or the others would wait forever in the
    // next all-reduce: a stop requested on any rank stops all of them (a single process's
    // average is its own flag).
    ctx.stop = comm.average(g_stop_training.load() ? 1.0 : 0.0) > 0;
    for (auto& h : hooks) h->after_step(ctx);
    if (ctx.stop) {
      ctx.result.interrupted = true;
      break;
    }
  }
  for (auto& h : hooks) h->after_train(ctx);
  ctx.result.peak_rss_mb = peak_rss_mb();
  return ctx.result;
}

}  // namespace autoassign
