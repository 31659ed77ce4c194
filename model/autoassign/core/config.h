// SPDX-License-Identifier: MIT
// The model configuration: architecture, classes, input policy and post-processing. It is
// written into every model file, so a model file describes itself. Torch-free.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace autoassign {

struct BackboneConfig {
  /// "resnet18", "resnet34", "resnet50" or "fast" (plain 3x3 conv stages for CPU real time).
  std::string type = "resnet50";
  /// resnet50 only: where a bottleneck's stride sits. true: the first 1x1 (MSRA / caffe style,
  /// the paper's backbone, cvpods' STRIDE_IN_1X1 and MMDetection's style='caffe'); false: the
  /// 3x3 (torchvision's, MMDetection's style='pytorch'). Same weights' shapes, other outputs.
  bool stride_in_1x1 = true;
  /// "frozen_bn" (the paper's), "bn" or "gn" (trains from scratch).
  std::string norm = "frozen_bn";
  /// Stages whose parameters are frozen: 0 none, 1 the stem, 2 stem + res2 (the paper's).
  int freeze_at = 2;
  /// "fast" only: output channels of the stem (stride 2) and of the stages at strides 4, 8,
  /// 16, 32; and how many extra stride-1 3x3 convs each of those four stages has.
  std::vector<int> channels = {16, 32, 64, 128, 256};
  std::vector<int> blocks = {1, 1, 1, 1};
  /// RepVGG form for every 3x3 conv (parallel 1x1 and identity BN branches, folded into the
  /// single 3x3 at inference). validate() refuses it: LibTorch 1.13 crashes inside its CPU
  /// convolutions on that network. Kept so the cause can be found; head.reparam works.
  bool reparam = false;
};

struct FpnConfig {
  int channels = 256;
  /// Pyramid levels, a contiguous range starting at 3 (P3..P7 for the paper).
  std::vector<int> levels = {3, 4, 5, 6, 7};
};

struct HeadConfig {
  int channels = 256;
  int num_convs = 4;        ///< convs per tower
  std::string norm = "gn";  ///< "gn" (the paper's), "bn" (foldable for CPU speed) or "none"
  int gn_groups = 32;
  /// One tower feeds the classification, objectness and regression predictors (half the
  /// tower cost; the paper has two towers).
  bool share_tower = false;
  /// norm "bn" only: tower convs in RepVGG training form, folded at inference.
  bool reparam = false;
  /// norm "bn" only: the tower convs stay shared by all levels but every level gets its own
  /// BatchNorm (statistics and affine), as in NAS-FPN and EfficientDet. One BN shared by the
  /// levels normalises each level with that level's batch statistics in training but with
  /// running statistics averaged over all levels at inference, which fit none of them.
  bool norm_per_level = false;
  /// Lower bound of the predicted ltrb distances, in strides. 0 is FCOS's ReLU: every box holds
  /// the location that predicts it, so a face smaller than the stride that falls between
  /// locations can only be boxed too large. -0.5 lets a box miss its location by up to half a
  /// stride, enough to box any such face tightly from its nearest location; a box whose sides
  /// cross (width or height below 0) is no box and post-processing drops it.
  double min_distance = 0.0;
};

struct InputConfig {
  /// "short_long": scale so the short side is short_side unless the long side would exceed
  /// long_side (the paper's 800/1333). "fit": scale to fit inside width x height (letterbox).
  /// Aspect ratio is always kept; padding goes to the bottom and right, to a multiple of
  /// size_divisor (and to width x height for "fit").
  std::string resize = "short_long";
  int short_side = 800;
  int long_side = 1333;
  int width = 0;
  int height = 0;
  int size_divisor = 32;
  /// Channel order of the network input: "BGR" (the paper's) or "RGB".
  std::string channel_order = "BGR";
  std::array<float, 3> mean = {103.530f, 116.280f, 123.675f};  ///< in channel_order, 0..255
  std::array<float, 3> std = {1.0f, 1.0f, 1.0f};
};

struct PostprocessConfig {
  float score_threshold = 0.05f;  ///< keep pi*omega > this
  float nms_iou = 0.6f;           ///< class-aware NMS
  int topk_per_level = 1000;      ///< capped at H*W per level
  int max_detections = 100;
  /// Box voting in NMS (0 = off, the authors' behaviour): each kept box becomes the
  /// score-weighted mean of itself and the lower-scored same-class candidates whose IoU with
  /// it is at least this (each candidate votes once, for the best such kept box); scores
  /// unchanged (nms_vote). The candidates a detector piles on one object disagree by a few
  /// pixels; their mean is closer to the object than the single best, which counts for small
  /// objects, where a few pixels decide IoU >= 0.5.
  float vote_iou = 0.0f;
  /// The order of scoring, top-k and threshold. "cvpods" (the authors' code, the default): s =
  /// pi * omega, the top-k (location, class) pairs by s per level, keep s > score_threshold,
  /// class-aware NMS in the network's frame, rescale, clip, drop empty boxes. "mmdet"
  /// (MMDetection 2.12-2.17, with which its 40.4 AP AutoAssign was measured): per level the
  /// top-k *locations* by max_k pi * omega, boxes clipped to the resized image, rescaled, then
  /// keep the pairs with pi > score_threshold (pi alone), s = pi * omega, class-aware NMS; no
  /// empty-box filter.
  std::string order = "cvpods";
};

struct ModelConfig {
  std::string name = "r50-fpn";
  int num_classes = 80;
  std::vector<std::string> class_names;  ///< num_classes entries (generated if absent)
  BackboneConfig backbone;
  FpnConfig fpn;
  HeadConfig head;
  InputConfig input;
  PostprocessConfig postprocess;

  /// Strides of the pyramid levels, 2^level.
  std::vector<int> strides() const;

  /// Parses JSON; `source` names the file or preset in error messages. Unknown keys and bad
  /// values throw std::invalid_argument naming the key and the value.
  static ModelConfig from_json(const std::string& text, const std::string& source);
  std::string to_json(int indent = 2) const;

  /// A built-in preset ("r50-fpn", "r18-fpn", "face-rt"); throws naming the known ones.
  static ModelConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  /// Reads a JSON file.
  static ModelConfig from_file(const std::string& path);

  /// Throws std::invalid_argument on inconsistent or out-of-range settings (names the field
  /// and the allowed range). Every field has an upper bound, and the network's size is bounded
  /// before anything is built from the config.
  void validate() const;
  /// Convolution weights the architecture implies (an estimate within a few percent).
  double parameter_estimate() const;
};

}  // namespace autoassign
