// SPDX-License-Identifier: MIT
// Inference post-processing as [OFF] (AUTOASSIGN.md section 5) and our NMS.
#pragma once

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/head.h"

namespace autoassign {

/// Indices of the boxes NMS keeps, by descending score. boxes [N, 4] (x1, y1, x2, y2), scores
/// [N]. A box is suppressed by a kept box of higher score whose IoU with it is > iou_threshold
/// (torchvision's rule). With labels [N] (int64) only boxes of the same label suppress each
/// other ("batched" NMS). CPU tensors use a plain loop; other devices compute the IoU matrix on
/// the device and run the greedy scan on the host.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold,
                  const torch::Tensor& labels = {});
/// nms() with box voting: `boxes` [K, 4] holds, for each kept index (same order), the
/// score-weighted mean of the kept box and of every later-ranked box of its label whose IoU
/// with it is >= vote_iou and that has not voted for a better kept box (each box votes once,
/// for the best kept box it overlaps that much). The votes ride on the IoUs the greedy scan
/// computes anyway, so voting costs almost nothing; it runs on the host for any device.
struct VotedNms {
  torch::Tensor keep;   // [K] int64, as nms()
  torch::Tensor boxes;  // [K, 4] float, on the input's device
};
VotedNms nms_vote(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold,
                  double vote_iou, const torch::Tensor& labels = {});
/// The device path of nms(), callable on CPU tensors too (tests compare the two).
torch::Tensor nms_matrix(const torch::Tensor& boxes, const torch::Tensor& scores,
                         double iou_threshold, const torch::Tensor& labels = {});

struct ImageDetections {
  torch::Tensor boxes;   // [D, 4] in original-frame pixels, clipped
  torch::Tensor scores;  // [D] pi * omega
  torch::Tensor labels;  // [D] int64
};

/// Geometry of one image inside the network input: boxes map back by dividing by the scales.
struct ImageGeometry {
  int orig_width = 0, orig_height = 0;
  double scale_x = 1.0, scale_y = 1.0;
};

/// Post-processes image `b` of a batch: score = pi * omega, per-level top min(k, H*W) over
/// (location, class), threshold, decode, class-aware NMS, max detections, rescale and clip.
ImageDetections postprocess(const HeadOutput& out, int64_t b, const std::vector<int>& strides,
                            const PostprocessConfig& config, const ImageGeometry& geometry);

}  // namespace autoassign
