// SPDX-License-Identifier: MIT
// Training data as the step loop takes it: which sample is the n-th of a rank (a seeded
// shuffle per epoch), the sample augmented (crop, flip, colour, ignore regions), batches of
// them, and worker threads building the next batches ahead of the step.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/data/dataset.h"
#include "autoassign/train/assign/loss.h"
#include "autoassign/train/engine/options.h"

namespace autoassign {

/// One batch, ready for the network.
struct Batch {
  torch::Tensor images;          // [B, 3, H, W] normalised
  std::vector<Target> targets;   // boxes in network-input pixels
  std::vector<int64_t> indices;  // dataset indices
  /// With a teacher (TrainOptions::teacher): its score per network level [B, H_l, W_l],
  /// undefined at levels it has no output for; empty without one.
  std::vector<torch::Tensor> teacher_scores;
};

/// Deterministic sample stream: which dataset index is the n-th sample of a rank, epoch by
/// epoch, and the augmented sample itself, from (seed, epoch, index) only, so a resumed or
/// multi-threaded run sees exactly the same data.
class BatchMaker {
 public:
  BatchMaker(const ModelConfig& config, const Dataset& dataset, const TrainOptions& options,
             int rank, int world_size);
  /// The batch of iteration `it` for this rank.
  Batch make(int64_t it) const;
  int64_t epoch_of(int64_t it) const;
  size_t samples_per_epoch() const { return per_rank_; }

 private:
  std::vector<int64_t> order(int64_t epoch) const;
  ModelConfig config_;
  const Dataset& dataset_;
  TrainOptions options_;
  int rank_, world_;
  size_t per_rank_;
};

/// Batches of consecutive iterations built ahead by worker threads; iteration `it` is made by
/// worker it % n, so the order (and every sample) is the same for any number of workers.
/// `finish`, when set, completes each batch on its worker's thread (a teacher's pass), with the
/// worker's number: it must touch only that worker's state.
class Prefetcher {
 public:
  using Finish = std::function<void(Batch&, int worker)>;
  Prefetcher(const BatchMaker& maker, int64_t first, int64_t end, int workers, int depth,
             Finish finish = nullptr);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  /// The batch of iteration `it` (waits for it); a worker's exception is rethrown here.
  Batch get(int64_t it);

 private:
  void run(int64_t it, int stride, int worker);

  const BatchMaker& maker_;
  Finish finish_;
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

}  // namespace autoassign
