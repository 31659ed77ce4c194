// SPDX-License-Identifier: MIT
// The training run's settings, each written once in AUTOASSIGN_TRAIN_OPTIONS: the member and
// its default, the command-line flag and help (tools/train.cpp makes the flags from it), the
// check with the option's name and range, and whether it decides what the run computes
// (saved in checkpoints and compared on --resume) or only where and how the run goes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoassign/core/config.h"
#include "autoassign/core/program_options.h"
#include "autoassign/core/schema.h"

namespace autoassign {

/// kComputes: decides what the run computes (schedule, data order, augmentation, arithmetic):
/// in the checkpoint's options, compared on --resume. kRuns: where the run writes, how it
/// prints, when it stops, how fast it goes.
enum class OptionRole { kComputes, kRuns };

// X(type, member, default, flag, role, check, help). A flag "--no-x" on a bool clears it.
#define AUTOASSIGN_TRAIN_OPTIONS(X)                                                               \
  X(std::string, output_dir, "", "-o,--output", kRuns, any_value(),                               \
    "run directory: checkpoint.pt, model.pt, log.jsonl, snapshots")                               \
  X(int, iterations, 10000, "--iterations", kComputes, range(1, 1e9), "total iterations")         \
  X(int, batch_size, 8, "--batch", kComputes, range(1, 4096), "images per iteration and process") \
  X(double, lr, 0.01, "--lr", kComputes, range(0, 100), "base learning rate")                     \
  X(double, momentum, 0.9, "--momentum", kComputes, below(0, 1), "SGD momentum")                  \
  X(double, weight_decay, 1e-4, "--weight-decay", kComputes, range(0, 1),                         \
    "SGD weight decay (none on norm layers' weight and bias)")                                    \
  X(int, warmup_iterations, 1000, "--warmup", kComputes, range(0, 1e9),                           \
    "linear warm-up iterations")                                                                  \
  X(double, warmup_factor, 0.001, "--warmup-factor", kComputes, range(0, 1),                      \
    "the warm-up starts at this fraction of the learning rate")                                   \
  X(std::string, schedule, "step", "--schedule", kComputes, one_of("step|cosine"),                \
    "step (x gamma at --steps) or cosine")                                                        \
  X(std::vector<int>, steps, std::vector<int>{}, "--steps", kComputes, range(0, 1e9),             \
    "iterations where a step schedule multiplies the lr by gamma (default: 2/3 and 8/9 of the "   \
    "iterations, [OFF]'s 60k/80k of 90k)")                                                        \
  X(double, gamma, 0.1, "--gamma", kComputes, range(0, 1), "a step schedule's factor")            \
  X(double, clip_grad_norm, 0, "--clip-grad", kComputes, range(0, 1e9),                           \
    "clip the gradient norm (0 = off)")                                                           \
  X(int, checkpoint_every, 500, "--checkpoint-every", kRuns, range(1, 1e9),                       \
    "iterations between checkpoints")                                                             \
  X(int, snapshot_every, 0, "--snapshot-every", kRuns, range(0, 1e9),                             \
    "also keep model_iter_N.pt every N iterations (0 = never)")                                   \
  X(int, log_every, 20, "--log-every", kRuns, range(1, 1e9), "iterations between log lines")      \
  X(int, threads, 0, kThreadsOption.flag, kRuns, range(0, 1024), kThreadsOption.help)             \
  X(std::string, device, "cpu", kDeviceOption.flag, kRuns, any_value(),                           \
    "cpu, cuda or cuda:N; with several processes 'cuda' means cuda:$LOCAL_RANK; CUDA where "      \
    "this LibTorch has none is a DeviceError saying so")                                          \
  X(int, loader_threads, 1, "--loader-threads", kRuns, range(1, 256),                             \
    "image decoding/augmentation threads")                                                        \
  X(uint64_t, seed, 0, "--seed", kComputes, any_value(),                                          \
    "random seed (weights, data order, augmentation)")                                            \
  X(bool, resume, false, "--resume", kRuns, any_value(),                                          \
    "continue from OUTPUT/checkpoint.pt exactly (the same options)")                              \
  X(std::string, init, "", "--init", kRuns, any_value(),                                          \
    "start from this model file's weights (fine-tuning: an `autoassign import`ed published "      \
    "model or ImageNet backbone, or an earlier model.pt). Without --preset/--config its "         \
    "architecture, input normalisation and frozen stages are the run's; a different class "       \
    "count re-initialises the classifier; a resumed run takes the checkpoint's weights")          \
  X(bool, init_grow, false, "--grow", kRuns, any_value(),                                         \
    "with --init and a --preset/--config of more channels (backbone stages, FPN, head; "          \
    "BatchNorm models): start from the --init model's function, the added channels at zero "      \
    "influence (function-preserving widening)")                                                   \
  X(int, stop_after, 0, "--stop-after", kRuns, range(0, 1e9),                                     \
    "stop (with a checkpoint) after N iterations of this run (0 = run to the end)")               \
  X(bool, hflip, true, "--no-hflip", kComputes, any_value(), "no horizontal flips")               \
  X(double, crop_min, 1.0, "--crop-min", kComputes, above(0, 1),                                  \
    "random crop: smallest region as a fraction of the letterbox region (1 = off); "              \
    "\"short_long\" inputs: the short side jittered by a factor in [crop_min, 1]")                \
  X(double, crop_max, 1.0, "--crop-max", kComputes, range(0, 4),                                  \
    "random crop: largest region as a fraction of the letterbox region; above 1 the image is "    \
    "shrunk onto mean-pixel padding (SCRFD's sample redistribution: smaller objects than at "     \
    "inference); at least crop_min")                                                              \
  X(bool, colour_jitter, false, "--colour-jitter", kComputes, any_value(),                        \
    "random brightness and contrast")                                                             \
  X(std::string, precision, "fp32", "--precision", kComputes, one_of("fp32|bf16"),                \
    "fp32, or bf16 (autocast for the network; assignment, loss, master weights and optimiser "    \
    "stay fp32; fast on CPUs with AMX or AVX512-BF16)")                                           \
  X(bool, channels_last, false, "--channels-last", kComputes, any_value(),                        \
    "channels-last (NHWC) weights and activations (faster oneDNN convolutions)")                  \
  X(int, force_topk, 0, "--force-topk", kComputes, range(0, 100),                                 \
    "give a gt too small to contain a location (under ~8 px) the K locations of largest centre "  \
    "prior as candidates, as MMDetection's force_topk (0 = off, the authors' behaviour; 9 is "    \
    "MMDetection's K)")                                                                           \
  X(double, reg_weight, 0, "--reg-weight", kComputes, range(0, 100),                              \
    "add W x the mean over objects of the positive-weighted GIoU loss of their assigned "         \
    "locations (not in the authors' loss; 0 = off)")                                              \
  X(bool, ignore_regions, false, "--ignore-regions", kComputes, any_value(),                      \
    "train the dataset's ignored objects (WIDER invalid faces, COCO crowds, VOC difficult) as "   \
    "ignore regions, with no background loss inside, instead of as background (the authors' "     \
    "behaviour)")                                                                                 \
  X(double, ignore_below, 0, "--ignore-below", kComputes, range(0, 1024),                         \
    "objects whose shorter side is under PX pixels at the network input (after the crop) "        \
    "become ignore regions instead of objects (0 = off)")                                         \
  X(bool, ignore_cut, false, "--ignore-cut", kComputes, any_value(),                              \
    "objects whose centre the crop leaves become ignore regions over their visible part "         \
    "instead of being dropped (which trains that part as background)")                            \
  X(double, ema, 0, "--ema", kComputes, below(0, 1),                                              \
    "keep an exponential moving average of the weights and BatchNorm statistics with this "       \
    "decay (e.g. 0.9995, about the last 2,000 steps; YOLOX's ModelEMA) and write it as "          \
    "model.pt and the snapshots (0 = off)")                                                       \
  X(double, ema_ramp, 2000, "--ema-ramp", kComputes, above(0, 1e9),                               \
    "the average's decay ramps up as 1 - exp(-step / N) (YOLOX's 2000)")                          \
  X(std::string, teacher, "", "--teacher", kComputes, any_value(),                                \
    "a face detector's ONNX file to learn from (YuNet or SCRFD, 640x640: ../shared/peers): it "   \
    "runs on every augmented image in the loader threads, and its score at strides 8/16/32 is "   \
    "a soft target for the student's (a single-class model)")                                     \
  X(double, distill_weight, 1.0, "--distill-weight", kComputes, range(0, 100),                    \
    "with --teacher: weight of the score distillation term (quality focal loss; 0 = none)")       \
  X(std::string, distill_objects, "suppress", "--distill-objects", kComputes,                     \
    one_of("full|raise|suppress"),                                                                \
    "with --teacher: full (its score both ways everywhere), raise (inside annotated objects and " \
    "ignore regions it may only raise the student's score) or suppress (it may only lower the "   \
    "student's score, and only away from every annotation: the confident false positives; the "   \
    "only mode that kept hard AP on the face recipe, face-rt.md item 11)")                        \
  X(double, distill_raise_min_size, 0, "--distill-raise-min-size", kComputes, range(0, 4096),     \
    "with --distill-objects suppress: inside annotated objects whose shorter side is at least "   \
    "PX pixels at the network input the teacher may also raise the student's score (the large "   \
    "faces whose best box the student scores low; small faces, where the teacher is weak, stay "  \
    "the labels'; 0 = off)")                                                                      \
  X(int, distill_min_stride, 8, "--distill-min-stride", kComputes, range(1, 128),                 \
    "with --teacher: distil only the levels of at least this stride (16: not P3, where the "      \
    "small faces are and the teacher is weakest)")                                                \
  X(double, teacher_ignore, 0, "--teacher-ignore", kComputes, range(0, 1),                        \
    "with --teacher: its detections scored at least this that match no annotation (IoU < 0.3) "   \
    "become ignore regions (0 = off)")                                                            \
  X(bool, quiet, false, "--quiet", kRuns, any_value(),                                            \
    "no progress output (the JSON log is still written)")

struct TrainOptions {
#define AUTOASSIGN_TRAIN_OPTION_MEMBER(type, name, def, flag, role, check, help) type name = def;
  AUTOASSIGN_TRAIN_OPTIONS(AUTOASSIGN_TRAIN_OPTION_MEMBER)
#undef AUTOASSIGN_TRAIN_OPTION_MEMBER
};

/// One row of the table, as generic code sees it.
struct TrainOptionSpec {
  const char* name;  ///< the member's name: the JSON key and the name in messages
  const char* flag;
  OptionRole role;
  FieldRule check;
  const char* help;
};

/// Calls f(spec, member) for every option of `o` (a TrainOptions, const or not), in the
/// table's order.
template <typename Options, typename F>
void for_each_train_option(Options& o, F&& f) {
#define AUTOASSIGN_TRAIN_OPTION_VISIT(type, name, def, flag, role, check, help) \
  f(TrainOptionSpec{#name, flag, OptionRole::role, check, help}, o.name);
  AUTOASSIGN_TRAIN_OPTIONS(AUTOASSIGN_TRAIN_OPTION_VISIT)
#undef AUTOASSIGN_TRAIN_OPTION_VISIT
}

/// Checks `config` (first), every option against its rule and the rules between options, and
/// fills what derives from others (a step schedule's default steps). Throws
/// std::invalid_argument naming the option.
void validate_train_options(TrainOptions& options, const ModelConfig& config);

/// The kComputes options, as saved in checkpoints and compared on --resume.
nlohmann::json train_options_to_json(const TrainOptions& options);

}  // namespace autoassign
