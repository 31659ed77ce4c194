// SPDX-License-Identifier: MIT
// Location grid, (l, t, r, b) <-> box coding, IoU and GIoU. All in input pixels.
#pragma once

#include <vector>

#include <torch/torch.h>

namespace autoassign {

/// The locations of all pyramid levels, P3 first, row-major inside a level (AUTOASSIGN.md
/// 1.5): location (u, v) of a level with stride s sits at (u*s, v*s), no half-stride offset.
struct Grid {
  torch::Tensor points;              // [J, 2] (x, y), float
  torch::Tensor strides;             // [J] stride of each location's level, float
  std::vector<int64_t> level_sizes;  // H*W per level
  std::vector<int64_t> heights, widths;
};

/// `shapes`: (H, W) of each level; `strides`: the level strides.
Grid make_grid(const std::vector<std::pair<int64_t, int64_t>>& shapes,
               const std::vector<int>& strides, const torch::Device& device = torch::kCPU);

/// (l, t, r, b) distances about points -> (x1, y1, x2, y2). points [..., 2], ltrb [..., 4].
torch::Tensor decode_boxes(const torch::Tensor& points, const torch::Tensor& ltrb);
/// Boxes about points -> (x - x1, y - y1, x2 - x, y2 - y). Negative for outside points.
torch::Tensor encode_boxes(const torch::Tensor& points, const torch::Tensor& boxes);

/// Pairwise IoU of a [N, 4] and b [M, 4] (x1, y1, x2, y2) -> [N, M]. Empty boxes give 0.
torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b);

/// GIoU of two boxes given as (l, t, r, b) about the same point, element-wise over [..., 4],
/// as [OFF]'s IOULoss: union clamped at >= float eps, enclosing area at >= eps.
torch::Tensor giou_ltrb(const torch::Tensor& pred, const torch::Tensor& target);

}  // namespace autoassign
