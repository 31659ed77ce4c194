// SPDX-License-Identifier: MIT
// Training: augmentation and batching on worker threads, SGD with warm-up and a step or cosine
// schedule, checkpoints that resume exactly, progress and JSON-lines logs, and data-parallel
// training across processes through c10d (Gloo on CPU).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "autoassign/config.h"
#include "autoassign/dataset.h"
#include "autoassign/loss.h"
#include "autoassign/model.h"

namespace autoassign {

struct TrainOptions {
  std::string output_dir;  ///< checkpoint.pt, model.pt, log.jsonl, snapshots
  int iterations = 10000;
  int batch_size = 8;  ///< per process
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 1e-4;  ///< not applied to norm layers' weight and bias
  int warmup_iterations = 1000;
  double warmup_factor = 0.001;
  std::string schedule = "step";  ///< "step" (x gamma at `steps`) or "cosine"
  std::vector<int> steps;  ///< default: 2/3 and 8/9 of the iterations ([OFF]'s 60k/80k of 90k)
  double gamma = 0.1;
  double clip_grad_norm = 0;  ///< 0 = no clipping
  int checkpoint_every = 500;
  int snapshot_every = 0;  ///< also keep model_iter_N.pt every N iterations (0 = never)
  int log_every = 20;
  int threads = 0;  ///< LibTorch intra-op threads; 0 = one per core
  /// "cpu", "cuda" or "cuda:N"; CUDA where this LibTorch has none is a DeviceError saying so.
  std::string device = "cpu";
  int loader_threads = 1;  ///< decoding/augmentation workers
  uint64_t seed = 0;
  bool resume = false;  ///< continue from output_dir/checkpoint.pt
  /// A model file to start from (fine-tuning: an imported published model or ImageNet
  /// backbone, or an earlier run's model.pt); see init_from_model. A resumed run takes its
  /// weights from the checkpoint instead.
  std::string init;
  /// With `init`: the run's network may be wider than the init model's (init_from_model's
  /// `grow`).
  bool init_grow = false;
  /// Stop (with a checkpoint) after this many iterations of this run, 0 = run to the end.
  int stop_after = 0;
  // Augmentation.
  bool hflip = true;
  /// "fit" inputs: crop a region of the input's aspect ratio whose size is a uniform fraction
  /// in [crop_min, 1] of the largest such region (1 = the whole image, letterboxed, as at
  /// inference). "short_long" inputs: short side jittered by a factor in [crop_min, 1].
  double crop_min = 1.0;
  /// "fit" inputs: the largest region, as the same fraction. Above 1 the region is larger than
  /// the letterbox region: the image is shrunk and placed at a random spot on mean-pixel
  /// padding (SCRFD's sample redistribution: faces smaller than at inference are trained too).
  double crop_max = 1.0;
  bool colour_jitter = false;
  /// "fp32", or "bf16": the network's forward and backward under CPU autocast (bf16
  /// convolutions on CPUs with AMX / AVX512-BF16), the assignment, loss, master weights and
  /// optimiser in fp32 (AUTOASSIGN.md 3.9).
  std::string precision = "fp32";
  /// Channels-last (NHWC) weights and activations (faster convolutions in oneDNN).
  bool channels_last = false;
  /// AssignOptions::force_topk: candidates for gts too small to contain a location (0 = off).
  int force_topk = 0;
  /// AssignOptions::reg_weight: an explicit GIoU term on the assigned locations (0 = off).
  double reg_weight = 0.0;
  /// The dataset's ignored objects (WIDER "invalid" faces, COCO crowds, VOC "difficult") as
  /// ignore regions (Target::ignore: no negative loss inside) instead of background, [OFF]'s
  /// treatment, where they are dropped.
  bool ignore_regions = false;
  /// Objects whose shorter side, at the network input after the crop, is under this many
  /// pixels become ignore regions instead of gts (0 = off).
  double ignore_below = 0;
  /// Objects whose centre the crop leaves (WIDER's crop rule drops them) become ignore regions
  /// over their visible part instead; dropped, that part is trained as background.
  bool ignore_cut = false;
  /// Exponential moving average of the weights and BatchNorm statistics (YOLOX's ModelEMA):
  /// after step n the average moves to d_n x average + (1 - d_n) x weights, with
  /// d_n = ema x (1 - exp(-n / ema_ramp)), so it follows the fast early changes and then
  /// smooths over roughly 1 / (1 - ema) steps. model.pt and the snapshots hold the average;
  /// the checkpoint holds both. 0 = off.
  double ema = 0;
  double ema_ramp = 2000;
  bool quiet = false;
};

/// One batch, ready for the network.
struct Batch {
  torch::Tensor images;          // [B, 3, H, W] normalised
  std::vector<Target> targets;   // boxes in network-input pixels
  std::vector<int64_t> indices;  // dataset indices
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

/// Averages gradients and scalars over the processes of a job; single-process: no-op.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual void average(std::vector<torch::Tensor>& tensors) = 0;
  virtual double average(double value) = 0;
  virtual void broadcast(std::vector<torch::Tensor>& tensors) = 0;
};

/// From the torchrun environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK): a c10d process
/// group over a TCPStore, ProcessGroupNCCL when `device` is CUDA and LibTorch has NCCL,
/// ProcessGroupGloo otherwise; without WORLD_SIZE (or WORLD_SIZE=1) a single process.
std::unique_ptr<Communicator> make_communicator_from_env(const std::string& device = "cpu");

struct TrainResult {
  int64_t iterations_done = 0;
  bool interrupted = false;
  std::map<std::string, double> last_losses;
  double images_per_second = 0;
  double loss_share = 0;  ///< forward time of the assignment/loss over the step time
  double peak_rss_mb = 0;
};

/// Fills `model` from the model file at `path` by tensor name (fine-tuning). Every tensor must
/// exist there with the same shape, except those whose shape follows the number of classes
/// (head.cls_pred.*, center_prior.*): where the class count differs they keep their
/// initialisation, as detection frameworks re-initialise a classifier for new classes. Returns
/// the names left initialised; anything else that does not fit is std::runtime_error naming the
/// file and the tensor.
///
/// `grow`: `model` may be a wider network of the same layout (more channels in any backbone
/// stage, the FPN or the head; BatchNorm or no normalisation, since GroupNorm's groups would
/// change): each tensor takes the file's values in its leading slice; the weights that read
/// the added input channels start at zero and those that produce added channels keep their
/// initialisation, so the grown network computes exactly what the file's did and the added
/// channels start learning from the first step (Net2Net's function-preserving widening, with
/// zeros instead of copies).
std::vector<std::string> init_from_model(AutoAssign& model, const std::string& path,
                                         bool grow = false);

/// Set by SIGINT/SIGTERM handlers the CLI installs: the trainer checkpoints and returns.
extern std::atomic<bool> g_stop_training;

TrainResult train(const ModelConfig& config, const Dataset& dataset, const TrainOptions& options,
                  Communicator& comm);

}  // namespace autoassign
