// SPDX-License-Identifier: MIT
#include "autoassign/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "autoassign/checkpoint.h"
#include "autoassign/detector.h"
#include "autoassign/preprocess.h"

namespace autoassign {

std::atomic<bool> g_stop_training{false};

namespace {

constexpr const char* kCheckpointTag = "autoassign-gst checkpoint";
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t mix(uint64_t a, uint64_t b) {
  // splitmix64 over the pair: independent streams per (seed, epoch, index).
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

BatchMaker::BatchMaker(const ModelConfig& config, const Dataset& dataset,
                       const TrainOptions& options, int rank, int world_size)
    : config_(config), dataset_(dataset), options_(options), rank_(rank), world_(world_size) {
  per_rank_ = dataset.samples.size() / static_cast<size_t>(world_size);
  if (per_rank_ == 0) {
    throw std::invalid_argument("dataset '" + dataset.name + "' has " +
                                std::to_string(dataset.samples.size()) + " images, fewer than " +
                                std::to_string(world_size) + " processes");
  }
}

std::vector<int64_t> BatchMaker::order(int64_t epoch) const {
  std::vector<int64_t> idx(dataset_.samples.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(mix(options_.seed, static_cast<uint64_t>(epoch)));
  std::shuffle(idx.begin(), idx.end(), rng);
  return idx;
}

int64_t BatchMaker::epoch_of(int64_t it) const {
  return it * options_.batch_size / static_cast<int64_t>(per_rank_);
}

Batch BatchMaker::make(int64_t it) const {
  const Preprocessor pre(config_.input);
  const auto& in = config_.input;
  const bool fit = in.resize == "fit";
  std::vector<cv::Mat> images;
  Batch batch;
  int64_t cached_epoch = -1;
  std::vector<int64_t> perm;
  for (int b = 0; b < options_.batch_size; ++b) {
    const int64_t pos = it * options_.batch_size + b;
    const int64_t epoch = pos / static_cast<int64_t>(per_rank_);
    const int64_t k = pos % static_cast<int64_t>(per_rank_);
    if (epoch != cached_epoch) {
      perm = order(epoch);
      cached_epoch = epoch;
    }
    // Distributed sampler: rank r takes every world-th sample of the epoch's permutation.
    const int64_t index = perm[static_cast<size_t>(rank_ + world_ * k)];
    const Sample& s = dataset_.samples[static_cast<size_t>(index)];
    std::mt19937_64 rng(
        mix(mix(options_.seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(index)));
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    cv::Mat img = cv::imread(s.image, cv::IMREAD_COLOR);
    if (img.empty()) throw std::runtime_error("cannot decode image " + s.image);
    const double iw = img.cols, ih = img.rows;
    const double scale_frac =
        options_.crop_min + (options_.crop_max - options_.crop_min) * unit(rng);
    double scale, x0 = 0, y0 = 0;
    int ow, oh;
    if (fit) {
      // A region of the input's aspect ratio: at scale 1 the smallest one holding the whole
      // image (letterbox, as at inference), smaller ones crop. Placed uniformly.
      ow = in.width;
      oh = in.height;
      const double full = std::max(iw / ow, ih / oh);  // image pixels per input pixel
      const double cw = ow * full * scale_frac, ch = oh * full * scale_frac;
      x0 = std::min(0.0, iw - cw) + unit(rng) * std::abs(iw - cw);
      y0 = std::min(0.0, ih - ch) + unit(rng) * std::abs(ih - ch);
      // plain letterbox: padding right/bottom
      if (options_.crop_min >= 1.0 && options_.crop_max <= 1.0) x0 = y0 = 0;
      scale = ow / cw;
    } else {
      auto [w, h] = pre.scaled_size(img.cols, img.rows);
      scale = static_cast<double>(w) / iw * scale_frac;
      ow = std::max(1, static_cast<int>(std::lround(iw * scale)));
      oh = std::max(1, static_cast<int>(std::lround(ih * scale)));
      (void)h;
    }
    cv::Mat m = (cv::Mat_<double>(2, 3) << scale, 0, -x0 * scale, 0, scale, -y0 * scale);
    cv::Mat out;
    // Outside the image: the mean pixel, i.e. 0 after normalisation, as the padding.
    const bool rgb = in.channel_order == "RGB";
    const cv::Scalar mean_bgr = rgb ? cv::Scalar(in.mean[2], in.mean[1], in.mean[0])
                                    : cv::Scalar(in.mean[0], in.mean[1], in.mean[2]);
    cv::warpAffine(img, out, m, cv::Size(ow, oh), cv::INTER_LINEAR, cv::BORDER_CONSTANT, mean_bgr);
    const bool flip = options_.hflip && unit(rng) < 0.5;
    if (flip) cv::flip(out, out, 1);
    if (options_.colour_jitter) {
      const double alpha = 0.8 + 0.4 * unit(rng), beta = -20 + 40 * unit(rng);
      out.convertTo(out, -1, alpha, beta);
    }
    if (rgb) cv::cvtColor(out, out, cv::COLOR_BGR2RGB);
    std::vector<float> boxes, ignore;
    std::vector<int64_t> labels;
    for (const auto& o : s.objects) {
      if (o.ignore && !options_.ignore_regions) continue;
      double x1 = (o.x1 - x0) * scale, y1 = (o.y1 - y0) * scale;
      double x2 = (o.x2 - x0) * scale, y2 = (o.y2 - y0) * scale;
      if (flip) {
        const double t = x1;
        x1 = ow - x2;
        x2 = ow - t;
      }
      // WIDER-style crop rule: a box stays if its centre is inside; it is clipped. An ignore
      // region stays while any of it is inside, and so does a cut box with ignore_cut.
      const double cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
      const bool cut = cx < 0 || cy < 0 || cx >= ow || cy >= oh;
      if (!o.ignore && cut && !options_.ignore_cut) continue;
      x1 = std::clamp(x1, 0.0, double(ow));
      x2 = std::clamp(x2, 0.0, double(ow));
      y1 = std::clamp(y1, 0.0, double(oh));
      y2 = std::clamp(y2, 0.0, double(oh));
      if (o.ignore || cut || std::min(x2 - x1, y2 - y1) < options_.ignore_below) {
        if (x2 > x1 && y2 > y1) {
          ignore.insert(ignore.end(), {float(x1), float(y1), float(x2), float(y2)});
        }
        continue;
      }
      if (x2 - x1 < 1 || y2 - y1 < 1) continue;
      boxes.insert(boxes.end(), {float(x1), float(y1), float(x2), float(y2)});
      labels.push_back(o.label);
    }
    batch.targets.push_back({torch::tensor(boxes).view({-1, 4}),
                             torch::tensor(labels, torch::kLong),
                             torch::tensor(ignore).view({-1, 4})});
    batch.indices.push_back(index);
    images.push_back(out);
  }
  int max_w = 0, max_h = 0;
  for (const auto& im : images) {
    max_w = std::max(max_w, im.cols);
    max_h = std::max(max_h, im.rows);
  }
  const auto [pw, ph] = pre.padded_size(max_w, max_h);
  batch.images = torch::zeros({static_cast<int64_t>(images.size()), 3, ph, pw});
  for (size_t i = 0; i < images.size(); ++i) {
    auto hwc = torch::from_blob(images[i].data, {images[i].rows, images[i].cols, 3},
                                {static_cast<int64_t>(images[i].step), 3, 1}, torch::kUInt8);
    pre.normalise_into(hwc, batch.images[static_cast<int64_t>(i)]);
  }
  return batch;
}

namespace {

nlohmann::json options_to_json(const TrainOptions& o);  // below, beside train()

// Batches of consecutive iterations built ahead by worker threads; iteration `it` is made by
// worker it % n, so the order (and every sample) is the same for any number of workers.
class Prefetcher {
 public:
  Prefetcher(const BatchMaker& maker, int64_t first, int64_t end, int workers, int depth)
      : maker_(maker), next_(first), end_(end), depth_(depth) {
    for (int w = 0; w < workers; ++w) {
      threads_.emplace_back([this, w, first, workers] { run(first + w, workers); });
    }
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Batch get(int64_t it) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return ready_.count(it) || error_; });
    if (error_) std::rethrow_exception(error_);
    Batch b = std::move(ready_[it]);
    ready_.erase(it);
    next_ = it + 1;
    cv_.notify_all();
    return b;
  }

 private:
  void run(int64_t it, int stride) {
    // Decoding and augmentation run on one LibTorch thread each; the compute threads belong
    // to the training step.
    at::set_num_threads(1);
    for (; it < end_; it += stride) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || it < next_ + depth_; });
        if (stop_) return;
      }
      try {
        Batch b = maker_.make(it);
        std::lock_guard<std::mutex> lock(mutex_);
        ready_[it] = std::move(b);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
      }
      cv_.notify_all();
    }
  }

  const BatchMaker& maker_;
  std::mutex mutex_;  // guards everything below
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t next_;
  int64_t end_;
  int depth_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

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

// "norm" and the reparam branches' "norm_1x1" / "norm_id".
bool is_norm_parameter(const std::string& name) {
  return name.find(".norm.") != std::string::npos || name.find(".norm_") != std::string::npos;
}

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

// The optimiser's state key of a parameter, as LibTorch 1.13's SGD keys it.
std::string state_key(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

std::string momentum_name(size_t group, size_t index) {
  return "optimizer." + std::to_string(group) + "." + std::to_string(index) + ".momentum_buffer";
}

// Every parameter and buffer of `from` into `to` (two models of one config).
void copy_weights(AutoAssign& from, AutoAssign& to) {
  torch::NoGradGuard no_grad;
  auto src = from->parameters(), dst = to->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  auto bsrc = from->buffers(), bdst = to->buffers();
  for (size_t i = 0; i < bsrc.size(); ++i) bdst[i].copy_(bsrc[i]);
}

// TrainOptions::ema after step `n` (1-based): floating-point parameters and buffers (BatchNorm
// statistics) move towards the model's; integer buffers (batch counters) are copied.
void update_average(AutoAssign& model, AutoAssign& average, double ema, double ramp, int64_t n) {
  torch::NoGradGuard no_grad;
  const double d = ema * (1.0 - std::exp(-static_cast<double>(n) / ramp));
  auto blend = [d](const std::vector<torch::Tensor>& src, std::vector<torch::Tensor> dst) {
    for (size_t i = 0; i < src.size(); ++i) {
      if (dst[i].is_floating_point()) {
        dst[i].mul_(d).add_(src[i], 1.0 - d);
      } else {
        dst[i].copy_(src[i]);
      }
    }
  };
  blend(model->parameters(), average->parameters());
  blend(model->buffers(), average->buffers());
}

// A resume file is a tensor file like the model file (data only, checked on reading): the
// model's tensors under "model.", SGD's momentum buffers under "optimizer.G.I.", the weight
// average's (TrainOptions::ema) under "ema.", and the iteration, config and options as metadata.
void save_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                     int64_t iteration, const nlohmann::json& options_json, AutoAssign* average) {
  auto tensors = module_tensors(*model, "model.");
  if (average) {
    auto more = module_tensors(**average, "ema.");
    tensors.insert(tensors.end(), more.begin(), more.end());
  }
  const auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      auto it = opt.state().find(state_key(groups[g].params()[i]));
      if (it == opt.state().end()) continue;
      auto& st = static_cast<torch::optim::SGDParamState&>(*it->second);
      if (st.momentum_buffer().defined())
        tensors.emplace_back(momentum_name(g, i), st.momentum_buffer());
    }
  }
  write_tensor_file(dir + "/checkpoint.pt",
                    {{"format", kCheckpointTag},
                     {"format_version", "2"},
                     {"iteration", std::to_string(iteration)},
                     {"config", model->config().to_json()},
                     {"options", options_json.dump()}},
                    tensors);
  save_model(dir + "/model.pt", average ? *average : model);
}

int64_t load_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                        const nlohmann::json& options_json, AutoAssign* average) {
  const std::string path = dir + "/checkpoint.pt";
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error("--resume: no checkpoint at " + path);
  }
  TensorFileReader reader(path);
  const auto& meta = reader.header().metadata;
  auto field = [&](const char* key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  int64_t iteration = -1;
  try {
    iteration = std::stoll(field("iteration"));
  } catch (const std::exception&) {
  }
  if (field("format") != kCheckpointTag || field("format_version") != "2" || iteration < 0) {
    throw std::runtime_error(path + ": not an autoassign training checkpoint of format version 2");
  }
  if (field("config") != model->config().to_json()) {
    throw std::runtime_error(path + ": the checkpoint's model config differs from this run's");
  }
  // "Continues exactly" means the same schedule, data order and augmentation: a resumed run
  // with other settings would silently become a different run, so name what differs.
  const auto saved = nlohmann::json::parse(field("options"), nullptr, false);
  std::string differ;
  if (saved.is_object()) {
    // An option newer than the checkpoint was at its default there (the behaviour before it).
    const nlohmann::json defaults = options_to_json(TrainOptions{});
    for (const auto& [key, value] : options_json.items()) {
      const auto& was = saved.contains(key) ? saved[key] : defaults[key];
      if (was != value) {
        differ += (differ.empty() ? "" : ", ") + key + " (checkpoint " + was.dump() + ", now " +
                  value.dump() + ")";
      }
    }
  }
  if (!differ.empty()) {
    throw std::runtime_error(path + ": --resume with other training settings than the " +
                             "checkpoint's: " + differ +
                             "; resume with the same flags or start a new run");
  }
  size_t expected = read_module_tensors(reader, *model, "model.").size();
  if (average) {
    // A run that had no average until now (its options predate the field) starts one here.
    if (reader.header().find("ema." + (*average)->named_parameters().begin()->key())) {
      expected += read_module_tensors(reader, **average, "ema.").size();
    } else {
      copy_weights(model, *average);
    }
  }
  const auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      if (!reader.header().find(momentum_name(g, i))) continue;
      auto st = std::make_unique<torch::optim::SGDParamState>();
      st->momentum_buffer(reader.read(momentum_name(g, i), torch::kFloat, p.sizes()));
      opt.state()[state_key(p)] = std::move(st);
      ++expected;
    }
  }
  if (expected != reader.header().tensors.size()) {
    throw std::runtime_error(path + ": holds tensors that are not this run's model or optimiser");
  }
  return iteration;
}

}  // namespace

std::vector<std::string> init_from_model(AutoAssign& model, const std::string& path, bool grow) {
  AutoAssign source = load_model(path);
  if (grow) {
    // GroupNorm normalises over groups of channels: more channels regroup the old ones and
    // change what they compute.
    for (const auto* c : {&source->config(), &model->config()}) {
      if (c->backbone.norm == "gn" || c->head.norm == "gn") {
        throw std::runtime_error(path + ": --grow needs BatchNorm or no normalisation; " + c->name +
                                 " uses GroupNorm, whose groups change with the width");
      }
    }
    // Same layout but the widths: another block or tower depth would leave file tensors unused
    // or pair per-level norms with the wrong convs, and the outputs would not be the file's.
    auto layout = [](const ModelConfig& c) {
      auto j = nlohmann::json::parse(c.to_json());
      nlohmann::json l = {{"backbone", j["backbone"]}, {"fpn", j["fpn"]}, {"head", j["head"]}};
      l["backbone"]["channels"] = c.backbone.channels.size();
      l["fpn"].erase("channels");
      l["head"].erase("channels");
      return l;
    };
    const auto& from_config = source->config();
    const auto& to_config = model->config();
    if (layout(from_config) != layout(to_config)) {
      throw std::runtime_error(path + ": --grow needs the same network layout as the --init " +
                               "model; only backbone.channels, fpn.channels and head.channels " +
                               "may differ");
    }
    // Frozen layers would keep their added channels at random values for good.
    for (int k = 0; k < to_config.backbone.freeze_at &&
                    k < static_cast<int>(to_config.backbone.channels.size());
         ++k) {
      if (to_config.backbone.channels[k] != from_config.backbone.channels[k]) {
        throw std::runtime_error(path + ": --grow cannot widen frozen backbone stages (" +
                                 "backbone.channels[" + std::to_string(k) +
                                 "] differs, freeze_at " +
                                 std::to_string(to_config.backbone.freeze_at) + ")");
      }
    }
  }
  std::map<std::string, torch::Tensor> from;
  for (auto& [name, tensor] : module_tensors(*source)) from[name] = tensor;
  const bool classes_differ = source->config().num_classes != model->config().num_classes;
  auto follows_classes = [](const std::string& name) {
    return name.rfind("head.cls_pred.", 0) == 0 || name.rfind("center_prior.", 0) == 0;
  };
  std::vector<std::string> left;
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& to) {
    auto it = from.find(name);
    if (it == from.end()) {
      throw std::runtime_error(path + ": --init model has no tensor '" + name +
                               "': its architecture is not this run's (" + source->config().name +
                               " against " + model->config().name + ")");
    }
    const auto& src = it->second;
    if (src.sizes() != to.sizes()) {
      if (classes_differ && follows_classes(name)) {
        left.push_back(name);
        return;
      }
      // Growable: same rank, every channel dimension (0 and 1) at least the file's, the
      // rest (kernel size) equal.
      bool growable = grow && src.dim() == to.dim();
      for (int64_t d = 0; growable && d < src.dim(); ++d) {
        growable = d < 2 ? src.size(d) <= to.size(d) : src.size(d) == to.size(d);
      }
      if (!growable) {
        std::ostringstream m;
        m << path << ": --init tensor '" << name << "' has shape " << src.sizes()
          << ", this run's model " << to.sizes()
          << (grow ? " (--grow widens channels only)" : " (a wider network: --grow)");
        throw std::runtime_error(m.str());
      }
      // Weights reading added input channels (dimension 1 of a conv) start at zero, the rest
      // of an added output channel (dimension 0) and added per-channel entries keep their
      // initialisation. The readers get gradients at the first step, the producers from the
      // second (once their readers are non-zero).
      if (to.dim() >= 2 && to.size(1) > src.size(1))
        to.narrow(1, src.size(1), to.size(1) - src.size(1)).zero_();
      auto lead = to;
      for (int64_t d = 0; d < src.dim(); ++d) lead = lead.narrow(d, 0, src.size(d));
      lead.copy_(src);
      return;
    }
    to.copy_(src);
  };
  for (auto& p : model->named_parameters()) fill(p.key(), p.value());
  for (auto& b : model->named_buffers()) fill(b.key(), b.value());
  return left;
}

namespace {

nlohmann::json options_to_json(const TrainOptions& o) {
  return {{"iterations", o.iterations},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"momentum", o.momentum},
          {"weight_decay", o.weight_decay},
          {"warmup_iterations", o.warmup_iterations},
          {"warmup_factor", o.warmup_factor},
          {"schedule", o.schedule},
          {"steps", o.steps},
          {"gamma", o.gamma},
          {"clip_grad_norm", o.clip_grad_norm},
          {"seed", o.seed},
          {"hflip", o.hflip},
          {"crop_min", o.crop_min},
          {"crop_max", o.crop_max},
          {"colour_jitter", o.colour_jitter},
          {"precision", o.precision},
          {"channels_last", o.channels_last},
          {"force_topk", o.force_topk},
          {"reg_weight", o.reg_weight},
          {"ignore_regions", o.ignore_regions},
          {"ignore_below", o.ignore_below},
          {"ignore_cut", o.ignore_cut},
          {"ema", o.ema},
          {"ema_ramp", o.ema_ramp}};
}

std::string format_duration(double s) {
  const int64_t t = static_cast<int64_t>(s);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

}  // namespace

TrainResult train(const ModelConfig& config, const Dataset& dataset, const TrainOptions& in_opts,
                  Communicator& comm) {
  TrainOptions o = in_opts;
  if (o.iterations < 1) throw std::invalid_argument("iterations must be >= 1");
  if (o.batch_size < 1) throw std::invalid_argument("batch size must be >= 1");
  if (o.schedule != "step" && o.schedule != "cosine") {
    throw std::invalid_argument("schedule must be step or cosine, got '" + o.schedule + "'");
  }
  if (o.schedule == "step" && o.steps.empty()) {
    o.steps = {o.iterations * 2 / 3, o.iterations * 8 / 9};
  }
  if (!(o.crop_min > 0 && o.crop_min <= 1))
    throw std::invalid_argument("crop_min must be in (0, 1]");
  if (!(o.crop_max >= o.crop_min && o.crop_max <= 4))
    throw std::invalid_argument("crop_max must be in [crop_min, 4]");
  if (o.crop_max > 1 && config.input.resize != "fit")
    throw std::invalid_argument("crop_max > 1 needs a \"fit\" input");
  if (o.force_topk < 0 || o.force_topk > 100)
    throw std::invalid_argument("force_topk must be in [0, 100]");
  if (!(o.reg_weight >= 0 && o.reg_weight <= 100))
    throw std::invalid_argument("reg_weight must be in [0, 100]");
  if (!(o.ignore_below >= 0 && o.ignore_below <= 1024))
    throw std::invalid_argument("ignore_below must be in [0, 1024] pixels");
  // The config's own checks first (bounds, refused options such as backbone.reparam), before
  // any directory is made or anything is built.
  config.validate();
  if (o.precision != "fp32" && o.precision != "bf16")
    throw std::invalid_argument("precision must be fp32 or bf16, got '" + o.precision + "'");
  if (o.output_dir.empty()) throw std::invalid_argument("an output directory is required");
  if (o.checkpoint_every < 1) throw std::invalid_argument("checkpoint_every must be >= 1");
  if (o.log_every < 1) throw std::invalid_argument("log_every must be >= 1");
  if (o.snapshot_every < 0) throw std::invalid_argument("snapshot_every must be >= 0");
  if (!(o.ema >= 0 && o.ema < 1)) throw std::invalid_argument("ema must be in [0, 1)");
  if (!(o.ema_ramp > 0)) throw std::invalid_argument("ema_ramp must be > 0");
  if (o.init_grow && o.init.empty()) throw std::invalid_argument("init_grow needs an init model");
  std::filesystem::create_directories(o.output_dir);
  const bool main_rank = comm.rank() == 0;
  const int threads = o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);

  torch::manual_seed(o.seed);
  // Checked before anything is built: a CUDA request on a CPU-only LibTorch fails here, naming
  // the device.
  const torch::Device device = torch_device(Device::parse(o.device));
  if (o.precision == "bf16") {
    // The trainer's autocast is LibTorch's CPU one; on CUDA it would leave the run in fp32
    // while the log said bf16.
    if (device.is_cuda())
      throw std::invalid_argument("precision bf16 is for CPU training; on CUDA train in fp32");
    resolve_precision("bf16", "cpu");  // no AVX-512, or oneDNN capped below it: says which
  }
  AutoAssign model(config);
  // Before the weights move or the optimiser exists; a resumed run's checkpoint overrides it.
  if (!o.init.empty()) {
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
  // Before the optimiser exists: its momentum buffers then take the same layout.
  if (o.channels_last) model->set_channels_last(true);
  const bool bf16 = o.precision == "bf16";
  AssignOptions assign;
  assign.force_topk = o.force_topk;
  assign.reg_weight = o.reg_weight;
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
  torch::optim::SGD opt(groups, torch::optim::SGDOptions(o.lr));
  const nlohmann::json options_json = options_to_json(o);
  int64_t start = 0;
  // Only rank 0 writes checkpoints, so only rank 0 reads one; the others take its iteration,
  // weights and momentum buffers below.
  // The weight average lives on rank 0 only: every rank holds the same weights, and only rank 0
  // writes files.
  std::optional<AutoAssign> average;
  if (o.ema > 0 && main_rank) {
    average.emplace(config);
    (*average)->to(device);
    if (o.channels_last) (*average)->set_channels_last(true);
    copy_weights(model, *average);
  }
  AutoAssign* average_ptr = average ? &*average : nullptr;
  if (o.resume && main_rank) {
    start = load_checkpoint(o.output_dir, model, opt, options_json, average_ptr);
  }
  // Every rank starts from rank 0's weights (and, on resume, its iteration and momentum).
  if (comm.world_size() > 1) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> state;
    for (auto& p : model->parameters()) state.push_back(p);
    for (auto& b : model->buffers()) state.push_back(b);
    torch::Tensor start_t = torch::tensor({static_cast<double>(start)}, torch::kDouble);
    state.push_back(start_t);
    comm.broadcast(state);
    start = static_cast<int64_t>(start_t.item<double>());
    if (o.resume && start > 0) {
      std::vector<torch::Tensor> momentum;
      for (auto& group : opt.param_groups()) {
        for (auto& p : group.params()) {
          const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
          auto& state_map = opt.state();
          if (state_map.find(key) == state_map.end()) {
            auto st = std::make_unique<torch::optim::SGDParamState>();
            st->momentum_buffer(torch::zeros_like(p));
            state_map[key] = std::move(st);
          }
          momentum.push_back(
              static_cast<torch::optim::SGDParamState&>(*state_map[key]).momentum_buffer());
        }
      }
      comm.broadcast(momentum);
    }
  }
  BatchMaker maker(config, dataset, o, comm.rank(), comm.world_size());
  int64_t end = o.iterations;
  if (o.stop_after > 0) end = std::min<int64_t>(end, start + o.stop_after);

  std::ofstream log;
  if (main_rank) log.open(o.output_dir + "/log.jsonl", std::ios::app);
  const bool tty = main_rank && !o.quiet && isatty(STDOUT_FILENO);
  if (main_rank && !o.quiet) {
    std::printf("training %s on %s: iterations %lld..%d, batch %d x %d process(es), %d threads\n",
                config.name.c_str(), dataset.summary().c_str(), static_cast<long long>(start),
                o.iterations, o.batch_size, comm.world_size(), threads);
    std::fflush(stdout);
  }

  TrainResult result;
  Prefetcher prefetch(maker, start, end, std::max(1, o.loader_threads),
                      2 * std::max(1, o.loader_threads));
  const auto t_start = Clock::now();
  double t_data = 0, t_forward = 0, t_loss = 0, t_backward = 0, t_total = 0;
  int64_t timed = 0;
  auto t_window = Clock::now();
  int64_t window_images = 0;
  double shown_ips = 0, shown_eta = 0;  // what the TTY bar shows between log lines
  auto shown_at = Clock::now();
  for (int64_t it = start; it < end; ++it) {
    const auto t0 = Clock::now();
    Batch batch = prefetch.get(it);
    if (!device.is_cpu()) {
      batch.images = batch.images.to(device, /*non_blocking=*/true);
      for (auto& t : batch.targets) {
        t.boxes = t.boxes.to(device);
        t.labels = t.labels.to(device);
        t.ignore = t.ignore.to(device);
      }
    }
    const double data_s = seconds_since(t0);
    const double lr = learning_rate(o, it);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);

    const auto t1 = Clock::now();
    HeadOutput out;
    if (bf16) {
      // Autocast covers the network only; its outputs go back to fp32 before the assignment
      // and loss (AUTOASSIGN.md 3.9: they need fp32 range and precision).
      {
        CpuAutocast autocast;
        out = model->forward(batch.images);
      }
      for (auto* outputs : {&out.cls_logits, &out.obj_logits, &out.distances}) {
        for (auto& t : *outputs) t = t.to(torch::kFloat);
      }
    } else {
      out = model->forward(batch.images);
    }
    const double forward_s = seconds_since(t1);
    const auto t2 = Clock::now();
    auto losses = autoassign_loss(
        out, model->strides(), batch.targets, *model->center_prior,
        [&comm](double v) { return comm.average(v); }, assign);
    const double loss_s = seconds_since(t2);
    auto total = torch::zeros({}, losses["loss_pos"].options());
    for (const auto& [name, term] : losses) total = total + term;
    const double total_value = total.item<double>();
    if (!std::isfinite(total_value)) {
      throw std::runtime_error("loss is not finite at iteration " + std::to_string(it) +
                               " (loss_pos " + std::to_string(losses["loss_pos"].item<double>()) +
                               ", loss_neg " + std::to_string(losses["loss_neg"].item<double>()) +
                               ", loss_center " +
                               std::to_string(losses["loss_center"].item<double>()) +
                               "); lower the learning rate or enable gradient clipping");
    }
    const auto t3 = Clock::now();
    opt.zero_grad();
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
    opt.step();
    if (average) update_average(model, *average, o.ema, o.ema_ramp, it + 1);
    const double backward_s = seconds_since(t3);
    const double step_s = seconds_since(t0);
    if (it > start) {  // the first step includes one-off allocations
      t_data += data_s;
      t_forward += forward_s;
      t_loss += loss_s;
      t_backward += backward_s;
      t_total += step_s;
      ++timed;
    }
    window_images += o.batch_size * comm.world_size();
    for (const auto& [k, v] : losses) result.last_losses[k] = v.item<double>();
    result.last_losses["loss"] = total_value;
    result.iterations_done = it + 1 - start;

    const bool last = it + 1 == end;
    const bool log_now = (it + 1) % o.log_every == 0 || last;
    // The TTY bar is redrawn every iteration with the last log window's rate and its ETA
    // counting down.
    auto draw_bar = [&](double ips, double eta) {
      const int width = 30;
      const int filled = static_cast<int>(width * (it + 1) / o.iterations);
      std::printf(
          "\r[%s%s] ep %lld it %lld/%d  loss %.4f (pos %.4f neg %.4f ctr %.4f)  %.1f img/s  "
          "ETA %s \033[K",
          std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
          static_cast<long long>(maker.epoch_of(it)), static_cast<long long>(it + 1), o.iterations,
          total_value, result.last_losses["loss_pos"], result.last_losses["loss_neg"],
          result.last_losses["loss_center"], ips, format_duration(std::max(0.0, eta)).c_str());
      std::fflush(stdout);
    };
    if (tty && !log_now) draw_bar(shown_ips, shown_eta - seconds_since(shown_at));
    if (main_rank && log_now) {
      const double window_s = seconds_since(t_window);
      const double ips = window_images / std::max(window_s, 1e-9);
      const double eta =
          (o.iterations - it - 1) * o.batch_size * comm.world_size() / std::max(ips, 1e-9);
      shown_ips = ips;
      shown_eta = eta;
      shown_at = Clock::now();
      nlohmann::json row = {{"iteration", it + 1},
                            {"epoch", maker.epoch_of(it)},
                            {"lr", lr},
                            {"loss", total_value},
                            {"loss_pos", result.last_losses["loss_pos"]},
                            {"loss_neg", result.last_losses["loss_neg"]},
                            {"loss_center", result.last_losses["loss_center"]},
                            {"images_per_s", ips},
                            {"eta_s", eta},
                            {"elapsed_s", seconds_since(t_start)}};
      if (result.last_losses.count("loss_reg")) row["loss_reg"] = result.last_losses["loss_reg"];
      log << row.dump() << "\n";
      log.flush();
      if (!o.quiet) {
        if (tty) {
          draw_bar(ips, eta);
        } else {
          std::printf(
              "it %lld/%d ep %lld lr %.5f loss %.4f pos %.4f neg %.4f ctr %.4f %.1f img/s ETA %s\n",
              static_cast<long long>(it + 1), o.iterations,
              static_cast<long long>(maker.epoch_of(it)), lr, total_value,
              result.last_losses["loss_pos"], result.last_losses["loss_neg"],
              result.last_losses["loss_center"], ips, format_duration(eta).c_str());
        }
        std::fflush(stdout);
      }
      t_window = Clock::now();
      window_images = 0;
    }
    // Every rank must leave at the same iteration, or the others would wait forever in the
    // next all-reduce: a stop requested on any rank stops all of them (a single process's
    // average is its own flag).
    const bool stop = comm.average(g_stop_training.load() ? 1.0 : 0.0) > 0;
    if (main_rank && ((it + 1) % o.checkpoint_every == 0 || last || stop)) {
      save_checkpoint(o.output_dir, model, opt, it + 1, options_json, average_ptr);
    }
    if (main_rank && o.snapshot_every > 0 && (it + 1) % o.snapshot_every == 0) {
      save_model(o.output_dir + "/model_iter_" + std::to_string(it + 1) + ".pt",
                 average ? *average : model);
    }
    if (stop) {
      result.interrupted = true;
      if (main_rank && !o.quiet) {
        std::printf("\ninterrupted: checkpoint written at iteration %lld; --resume continues\n",
                    static_cast<long long>(it + 1));
      }
      break;
    }
  }
  if (tty) std::printf("\n");
  if (timed > 0) {
    result.images_per_second = timed * o.batch_size / std::max(t_total, 1e-9);
    result.loss_share = t_loss / std::max(t_total, 1e-9);
    if (main_rank && !o.quiet) {
      std::printf(
          "step time: data wait %.1f%%, forward %.1f%%, assignment/loss %.1f%%, backward+update "
          "%.1f%%; %.2f images/s per process\n",
          100 * t_data / t_total, 100 * t_forward / t_total, 100 * t_loss / t_total,
          100 * t_backward / t_total, result.images_per_second);
    }
  }
  result.peak_rss_mb = peak_rss_mb();
  return result;
}

namespace {

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void average(std::vector<torch::Tensor>&) override {}
  double average(double value) override { return value; }
  void broadcast(std::vector<torch::Tensor>&) override {}
};

}  // namespace

std::unique_ptr<Communicator> make_process_group_communicator(const std::string& addr, int port,
                                                              int rank, int world_size,
                                                              const std::string& device);

std::unique_ptr<Communicator> make_communicator_from_env(const std::string& device) {
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || std::string(world) == "1") return std::make_unique<SingleProcess>();
  auto get = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    if (!v || !*v)
      throw std::runtime_error(std::string("WORLD_SIZE is set but ") + name + " is not");
    return v;
  };
  const int world_size = std::stoi(world);
  const int rank = std::stoi(get("RANK"));
  const int port = std::stoi(get("MASTER_PORT"));
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::runtime_error("RANK " + std::to_string(rank) + " is not in [0, WORLD_SIZE " +
                             std::to_string(world_size) + ")");
  }
  return make_process_group_communicator(get("MASTER_ADDR"), port, rank, world_size, device);
}

}  // namespace autoassign
