// SPDX-License-Identifier: MIT
#include "autoassign/infer/box_coder.h"

#include <limits>

namespace autoassign {

Grid make_grid(const std::vector<std::pair<int64_t, int64_t>>& shapes,
               const std::vector<int>& strides, const torch::Device& device) {
  TORCH_CHECK(shapes.size() == strides.size(), "make_grid: ", shapes.size(), " shapes but ",
              strides.size(), " strides");
  Grid grid;
  std::vector<torch::Tensor> points, level_strides;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  for (size_t l = 0; l < shapes.size(); ++l) {
    const auto [h, w] = shapes[l];
    const float s = static_cast<float>(strides[l]);
    auto xs = torch::arange(w, opts) * s;  // [W]
    auto ys = torch::arange(h, opts) * s;  // [H]
    auto yy = ys.view({h, 1}).expand({h, w});
    auto xx = xs.view({1, w}).expand({h, w});
    points.push_back(torch::stack({xx.reshape(-1), yy.reshape(-1)}, 1));  // [H*W, 2]
    level_strides.push_back(torch::full({h * w}, s, opts));
    grid.level_sizes.push_back(h * w);
    grid.heights.push_back(h);
    grid.widths.push_back(w);
  }
  grid.points = torch::cat(points, 0);
  grid.strides = torch::cat(level_strides, 0);
  return grid;
}

torch::Tensor decode_boxes(const torch::Tensor& points, const torch::Tensor& ltrb) {
  auto x = points.select(-1, 0), y = points.select(-1, 1);
  return torch::stack({x - ltrb.select(-1, 0), y - ltrb.select(-1, 1), x + ltrb.select(-1, 2),
                       y + ltrb.select(-1, 3)},
                      -1);
}

torch::Tensor encode_boxes(const torch::Tensor& points, const torch::Tensor& boxes) {
  auto x = points.select(-1, 0), y = points.select(-1, 1);
  return torch::stack({x - boxes.select(-1, 0), y - boxes.select(-1, 1), boxes.select(-1, 2) - x,
                       boxes.select(-1, 3) - y},
                      -1);
}

torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4, "box_iou: a must be [N, 4], got ", a.sizes());
  TORCH_CHECK(b.dim() == 2 && b.size(1) == 4, "box_iou: b must be [M, 4], got ", b.sizes());
  auto area = [](const torch::Tensor& t) {
    return (t.select(1, 2) - t.select(1, 0)).clamp_min(0) *
           (t.select(1, 3) - t.select(1, 1)).clamp_min(0);
  };
  auto lt = torch::max(a.unsqueeze(1).narrow(2, 0, 2), b.unsqueeze(0).narrow(2, 0, 2));
  auto rb = torch::min(a.unsqueeze(1).narrow(2, 2, 2), b.unsqueeze(0).narrow(2, 2, 2));
  auto wh = (rb - lt).clamp_min(0);
  auto inter = wh.select(2, 0) * wh.select(2, 1);  // [N, M]
  auto uni = area(a).unsqueeze(1) + area(b).unsqueeze(0) - inter;
  return torch::where(uni > 0, inter / uni.clamp_min(std::numeric_limits<float>::min()),
                      torch::zeros_like(inter));
}

torch::Tensor giou_ltrb(const torch::Tensor& pred, const torch::Tensor& target) {
  auto pl = pred.select(-1, 0), pt = pred.select(-1, 1), pr = pred.select(-1, 2),
       pb = pred.select(-1, 3);
  auto tl = target.select(-1, 0), tt = target.select(-1, 1), tr = target.select(-1, 2),
       tb = target.select(-1, 3);
  // A prediction whose sides cross (head.min_distance < 0 allows it) has no area, not the
  // positive product of two negative extents.
  auto pred_area = (pl + pr).clamp_min(0) * (pt + pb).clamp_min(0);
  auto target_area = (tl + tr) * (tt + tb);
  auto inter_w = (torch::min(pl, tl) + torch::min(pr, tr)).clamp_min(0);
  auto inter_h = (torch::min(pt, tt) + torch::min(pb, tb)).clamp_min(0);
  auto inter = inter_w * inter_h;
  const double eps = std::numeric_limits<float>::epsilon();
  auto uni = (pred_area + target_area - inter).clamp_min(eps);
  auto enclose_w = torch::max(pl, tl) + torch::max(pr, tr);
  auto enclose_h = torch::max(pt, tt) + torch::max(pb, tb);
  auto enclose = (enclose_w * enclose_h).clamp_min(eps);
  auto iou = inter / uni;
  return iou - (enclose - uni) / enclose;
}

}  // namespace autoassign
