// SPDX-License-Identifier: MIT
#include "autoassign/train/data/batches.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "autoassign/infer/preprocess.h"

namespace autoassign {
namespace {

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

Prefetcher::Prefetcher(const BatchMaker& maker, int64_t first, int64_t end, int workers, int depth,
                       Finish finish)
    : maker_(maker), finish_(std::move(finish)), next_(first), end_(end), depth_(depth) {
  for (int w = 0; w < workers; ++w) {
    threads_.emplace_back([this, w, first, workers] { run(first + w, workers, w); });
  }
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

Batch Prefetcher::get(int64_t it) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return ready_.count(it) || error_; });
  if (error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_[it]);
  ready_.erase(it);
  next_ = it + 1;
  cv_.notify_all();
  return b;
}

void Prefetcher::run(int64_t it, int stride, int worker) {
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
      if (finish_) finish_(b, worker);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[it] = std::move(b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

}  // namespace autoassign
