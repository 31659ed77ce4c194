// SPDX-License-Identifier: MIT
#include "autoassign/infer/postprocess.h"

#include <cmath>
#include <numeric>

#include "autoassign/infer/box_coder.h"

namespace autoassign {
namespace {

void check_nms_args(const torch::Tensor& boxes, const torch::Tensor& scores,
                    const torch::Tensor& labels) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be [N, 4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must be [N] with N = ", boxes.size(0), ", got ", scores.sizes());
  TORCH_CHECK(!labels.defined() || (labels.dim() == 1 && labels.size(0) == boxes.size(0)),
              "nms: labels must be [N] with N = ", boxes.size(0), ", got ", labels.sizes());
}

}  // namespace

namespace {

// The greedy scan of nms() on host tensors; with vote_iou > 0 it also fills `voted` [K, 4].
torch::Tensor greedy_nms(const torch::Tensor& boxes_in, const torch::Tensor& scores_in,
                         double iou_threshold, const torch::Tensor& labels_in, double vote_iou,
                         torch::Tensor* voted) {
  const int64_t n = boxes_in.size(0);
  auto boxes = boxes_in.to(torch::kCPU, torch::kFloat).contiguous();
  auto scores = scores_in.to(torch::kCPU, torch::kFloat).contiguous();
  auto labels = labels_in.defined() ? labels_in.to(torch::kCPU, torch::kLong).contiguous()
                                    : torch::zeros({n}, torch::kLong);
  const float* b = boxes.data_ptr<float>();
  const float* s = scores.data_ptr<float>();
  const int64_t* lab = labels.data_ptr<int64_t>();

  // Sort by score, highest first; a stable sort keeps input order among equal scores.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [s](int64_t i, int64_t j) { return s[i] > s[j]; });

  std::vector<float> area(n);
  for (int64_t i = 0; i < n; ++i) {
    area[i] = std::max(0.f, b[4 * i + 2] - b[4 * i]) * std::max(0.f, b[4 * i + 3] - b[4 * i + 1]);
  }
  std::vector<char> suppressed(n, 0), has_voted(n, 0);
  std::vector<int64_t> keep;
  std::vector<double> sums;  // per kept box: weighted x1, y1, x2, y2 and the weight
  // Greedy: take the best box not yet suppressed, suppress every later box of its label that
  // overlaps it by more than the threshold.
  for (int64_t oi = 0; oi < n; ++oi) {
    const int64_t i = order[oi];
    if (suppressed[i]) continue;
    keep.push_back(i);
    double acc[5] = {s[i] * b[4 * i], s[i] * b[4 * i + 1], s[i] * b[4 * i + 2], s[i] * b[4 * i + 3],
                     s[i]};
    for (int64_t oj = oi + 1; oj < n; ++oj) {
      const int64_t j = order[oj];
      if (suppressed[j] || lab[j] != lab[i]) continue;
      const float w = std::min(b[4 * i + 2], b[4 * j + 2]) - std::max(b[4 * i], b[4 * j]);
      const float h = std::min(b[4 * i + 3], b[4 * j + 3]) - std::max(b[4 * i + 1], b[4 * j + 1]);
      if (w <= 0 || h <= 0) continue;
      const float inter = w * h;
      const float uni = area[i] + area[j] - inter;
      if (!(uni > 0)) continue;
      const float iou = inter / uni;
      if (iou > iou_threshold) suppressed[j] = 1;
      if (vote_iou > 0 && !has_voted[j] && iou >= vote_iou) {
        has_voted[j] = 1;
        for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(s[j]) * b[4 * j + k];
        acc[4] += s[j];
      }
    }
    if (voted) sums.insert(sums.end(), acc, acc + 5);
  }
  if (voted) {
    const int64_t k = static_cast<int64_t>(keep.size());
    *voted = torch::empty({k, 4}, torch::kFloat);
    float* v = voted->data_ptr<float>();
    for (int64_t r = 0; r < k; ++r) {
      const double wsum = std::max(sums[5 * r + 4], 1e-30);
      for (int c = 0; c < 4; ++c) v[4 * r + c] = static_cast<float>(sums[5 * r + c] / wsum);
    }
  }
  return torch::tensor(keep, torch::kLong);
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold,
                  const torch::Tensor& labels) {
  check_nms_args(boxes, scores, labels);
  if (!boxes.device().is_cpu()) return nms_matrix(boxes, scores, iou_threshold, labels);
  if (boxes.size(0) == 0) return torch::zeros({0}, torch::kLong);
  return greedy_nms(boxes, scores, iou_threshold, labels, 0.0, nullptr);
}

VotedNms nms_vote(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold,
                  double vote_iou, const torch::Tensor& labels) {
  check_nms_args(boxes, scores, labels);
  VotedNms r;
  if (boxes.size(0) == 0) {
    r.keep = torch::zeros({0}, torch::kLong).to(boxes.device());
    r.boxes = torch::zeros({0, 4}, torch::kFloat).to(boxes.device());
    return r;
  }
  r.keep = greedy_nms(boxes, scores, iou_threshold, labels, vote_iou, &r.boxes).to(boxes.device());
  r.boxes = r.boxes.to(boxes.device());
  return r;
}

torch::Tensor nms_matrix(const torch::Tensor& boxes, const torch::Tensor& scores,
                         double iou_threshold, const torch::Tensor& labels) {
  check_nms_args(boxes, scores, labels);
  const int64_t n = boxes.size(0);
  if (n == 0) return torch::zeros({0}, torch::kLong);
  auto order = std::get<1>(scores.to(torch::kFloat)
                               .sort(/*stable=*/true, /*dim=*/0,
                                     /*descending=*/true));
  auto sorted = boxes.to(torch::kFloat).index_select(0, order);
  // overlap[i][j]: sorted box i would suppress sorted box j (same label, IoU above threshold).
  auto overlap = box_iou(sorted, sorted) > iou_threshold;
  if (labels.defined()) {
    auto l = labels.index_select(0, order);
    overlap = overlap & (l.unsqueeze(1) == l.unsqueeze(0));
  }
  auto host = overlap.to(torch::kCPU).contiguous();
  auto order_cpu = order.to(torch::kCPU);
  const bool* m = host.data_ptr<bool>();
  std::vector<char> suppressed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    keep.push_back(order_cpu[i].item<int64_t>());
    for (int64_t j = i + 1; j < n; ++j) {
      if (m[i * n + j]) suppressed[j] = 1;
    }
  }
  return torch::tensor(keep, torch::kLong).to(boxes.device());
}

namespace {

// The network-frame points (u * stride, v * stride) of flat locations of a level `w` wide: no
// half-stride offset, as in the authors' code and MMDetection's AutoAssignHead.
torch::Tensor level_points(const torch::Tensor& loc, int64_t w, int stride) {
  const float s = static_cast<float>(stride);
  return torch::stack(
      {loc.remainder(w).to(torch::kFloat) * s, loc.div(w, "floor").to(torch::kFloat) * s}, 1);
}

// Clips [N, 4] boxes in place to [0, w] x [0, h].
void clip_boxes_(torch::Tensor& boxes, double w, double h) {
  boxes.select(1, 0).clamp_(0, w);
  boxes.select(1, 2).clamp_(0, w);
  boxes.select(1, 1).clamp_(0, h);
  boxes.select(1, 3).clamp_(0, h);
}

// From the network's (resized) frame to the original frame.
torch::Tensor to_original_frame(const torch::Tensor& boxes, const ImageGeometry& g) {
  return boxes / torch::tensor({g.scale_x, g.scale_y, g.scale_x, g.scale_y}, torch::kFloat)
                     .to(boxes.device());
}

// Class-aware NMS over the candidates, the first max_detections kept, best first. Boxes whose
// sides cross (head.min_distance < 0 allows them) are no boxes and go first; with the default
// min_distance 0 there are none.
ImageDetections keep_best(ImageDetections candidates, const PostprocessConfig& config) {
  const auto& c = candidates.boxes;
  auto uncrossed =
      ((c.select(1, 2) >= c.select(1, 0)) & (c.select(1, 3) >= c.select(1, 1))).nonzero().view(-1);
  if (uncrossed.numel() < c.size(0)) {
    candidates.boxes = c.index_select(0, uncrossed);
    candidates.scores = candidates.scores.index_select(0, uncrossed);
    candidates.labels = candidates.labels.index_select(0, uncrossed);
  }
  torch::Tensor keep, voted;
  if (config.vote_iou > 0) {
    auto v = nms_vote(candidates.boxes, candidates.scores, config.nms_iou, config.vote_iou,
                      candidates.labels);
    keep = v.keep;
    voted = v.boxes;
  } else {
    keep = nms(candidates.boxes, candidates.scores, config.nms_iou, candidates.labels);
  }
  const int64_t k = std::min<int64_t>(keep.size(0), config.max_detections);
  keep = keep.narrow(0, 0, k).to(candidates.boxes.device());
  ImageDetections det;
  det.boxes = voted.defined() ? voted.narrow(0, 0, k) : candidates.boxes.index_select(0, keep);
  det.scores = candidates.scores.index_select(0, keep);
  det.labels = candidates.labels.index_select(0, keep);
  return det;
}

// MMDetection 2.12-2.17's order (FCOSHead._get_bboxes + multiclass_nms, which AutoAssignHead
// inherits): see PostprocessConfig::order. Kept apart from the authors' order below so that each
// reads as its source does.
ImageDetections postprocess_mmdet(const HeadOutput& out, int64_t b, const std::vector<int>& strides,
                                  const PostprocessConfig& config, const ImageGeometry& geometry) {
  // The resized image before padding: distance2bbox's max_shape.
  const double img_w = std::round(geometry.orig_width * geometry.scale_x);
  const double img_h = std::round(geometry.orig_height * geometry.scale_y);
  std::vector<torch::Tensor> all_boxes, all_pi, all_omega;
  for (size_t l = 0; l < out.cls_logits.size(); ++l) {
    auto cls = out.cls_logits[l][b].to(torch::kFloat);  // [K, H, W]
    const int64_t num_classes = cls.size(0), w = cls.size(2);
    auto pi = torch::sigmoid(cls).permute({1, 2, 0}).reshape({-1, num_classes});      // [HW, K]
    auto omega = torch::sigmoid(out.obj_logits[l][b].to(torch::kFloat)).reshape(-1);  // [HW]
    auto ltrb = out.distances[l][b].to(torch::kFloat).permute({1, 2, 0}).reshape({-1, 4});
    auto loc =
        torch::arange(pi.size(0), torch::TensorOptions().dtype(torch::kLong).device(pi.device()));
    if (pi.size(0) > config.topk_per_level) {
      // Locations (all their classes kept) ranked by their best class's pi * omega.
      auto best = std::get<0>((pi * omega.unsqueeze(1)).max(1));
      loc = std::get<1>(best.topk(config.topk_per_level));
      pi = pi.index_select(0, loc);
      omega = omega.index_select(0, loc);
      ltrb = ltrb.index_select(0, loc);
    }
    auto boxes = decode_boxes(level_points(loc, w, strides[l]), ltrb);
    clip_boxes_(boxes, img_w, img_h);
    all_boxes.push_back(boxes);
    all_pi.push_back(pi);
    all_omega.push_back(omega);
  }
  auto boxes = to_original_frame(torch::cat(all_boxes, 0), geometry);  // before NMS, as mmdet
  auto pi = torch::cat(all_pi, 0), omega = torch::cat(all_omega, 0);
  const int64_t num_classes = pi.size(1);
  // (location, class) pairs whose pi alone passes the threshold; omega multiplies afterwards.
  auto pairs = (pi > config.score_threshold).reshape(-1).nonzero().squeeze(1);
  auto loc = pairs.div(num_classes, "floor");
  ImageDetections candidates;
  candidates.labels = pairs.remainder(num_classes);
  candidates.scores = pi.reshape(-1).index_select(0, pairs) * omega.index_select(0, loc);
  candidates.boxes = boxes.index_select(0, loc);
  return keep_best(candidates, config);
}

}  // namespace

ImageDetections postprocess(const HeadOutput& out, int64_t b, const std::vector<int>& strides,
                            const PostprocessConfig& config, const ImageGeometry& geometry) {
  torch::NoGradGuard no_grad;
  if (config.order == "mmdet") return postprocess_mmdet(out, b, strides, config, geometry);
  std::vector<torch::Tensor> all_boxes, all_scores, all_labels;
  for (size_t l = 0; l < out.cls_logits.size(); ++l) {
    auto cls = out.cls_logits[l][b].to(torch::kFloat);  // [K, H, W]
    const int64_t num_classes = cls.size(0), h = cls.size(1), w = cls.size(2);
    auto obj = out.obj_logits[l][b].to(torch::kFloat);  // [1, H, W]
    // s_jk = pi_jk * omega_j (a product, no square root), flattened location-major.
    auto scores = (torch::sigmoid(cls) * torch::sigmoid(obj)).permute({1, 2, 0}).reshape(-1);
    // The cap is the level's number of locations, not locations x classes.
    const int64_t k = std::min<int64_t>(config.topk_per_level, h * w);
    auto [top_scores, top_idx] = scores.topk(k, /*dim=*/0, /*largest=*/true, /*sorted=*/true);
    auto keep = top_scores > config.score_threshold;
    top_scores = top_scores.index({keep});
    top_idx = top_idx.index({keep});
    auto loc = top_idx.div(num_classes, "floor");
    auto label = top_idx.remainder(num_classes);
    auto ltrb = out.distances[l][b].to(torch::kFloat).permute({1, 2, 0}).reshape({-1, 4});
    all_boxes.push_back(decode_boxes(level_points(loc, w, strides[l]), ltrb.index_select(0, loc)));
    all_scores.push_back(top_scores);
    all_labels.push_back(label);
  }
  ImageDetections candidates;
  candidates.boxes = torch::cat(all_boxes, 0);
  candidates.scores = torch::cat(all_scores, 0);
  candidates.labels = torch::cat(all_labels, 0);
  const ImageDetections best = keep_best(candidates, config);
  // Back to the original frame, clipped; boxes that end up empty are dropped.
  auto boxes = to_original_frame(best.boxes, geometry);
  clip_boxes_(boxes, geometry.orig_width, geometry.orig_height);
  auto nonempty =
      (boxes.select(1, 2) > boxes.select(1, 0)) & (boxes.select(1, 3) > boxes.select(1, 1));
  ImageDetections det;
  det.boxes = boxes.index({nonempty});
  det.scores = best.scores.index({nonempty});
  det.labels = best.labels.index({nonempty});
  return det;
}

}  // namespace autoassign
