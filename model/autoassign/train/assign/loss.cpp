// SPDX-License-Identifier: MIT
#include "autoassign/train/assign/loss.h"

#include <limits>

namespace autoassign {

namespace idx = torch::indexing;

namespace {

// [N, J]: location j lies strictly inside box n (a point on the border is outside), as [OFF].
torch::Tensor strictly_inside(const torch::Tensor& points, const torch::Tensor& boxes) {
  auto x = points.select(1, 0).unsqueeze(0), y = points.select(1, 1).unsqueeze(0);
  return (x > boxes.select(1, 0).unsqueeze(1)) & (y > boxes.select(1, 1).unsqueeze(1)) &
         (x < boxes.select(1, 2).unsqueeze(1)) & (y < boxes.select(1, 3).unsqueeze(1));
}

}  // namespace

std::vector<FlatOutputs> flatten_outputs(const HeadOutput& out) {
  TORCH_CHECK(!out.cls_logits.empty(), "flatten_outputs: no levels");
  const int64_t batch = out.cls_logits[0].size(0);
  const int64_t num_classes = out.cls_logits[0].size(1);
  std::vector<torch::Tensor> cls, obj, dist;
  for (size_t l = 0; l < out.cls_logits.size(); ++l) {
    // NCHW -> [B, H*W, C]: location-major in row-major order, as the grid.
    cls.push_back(out.cls_logits[l].permute({0, 2, 3, 1}).reshape({batch, -1, num_classes}));
    obj.push_back(out.obj_logits[l].reshape({batch, -1}));
    dist.push_back(out.distances[l].permute({0, 2, 3, 1}).reshape({batch, -1, 4}));
  }
  auto cls_all = torch::cat(cls, 1), obj_all = torch::cat(obj, 1), dist_all = torch::cat(dist, 1);
  std::vector<FlatOutputs> flat;
  for (int64_t b = 0; b < batch; ++b) flat.push_back({cls_all[b], obj_all[b], dist_all[b]});
  return flat;
}

ImageAssignment assign_image(const FlatOutputs& out, const Grid& grid, const Target& target,
                             CenterPriorImpl& prior, const AssignOptions& options) {
  // All loss math in fp32 ([MMD] force_fp32).
  auto cls = out.cls_logits.to(torch::kFloat);  // [J, K] z
  auto obj = out.obj_logits.to(torch::kFloat);  // [J] o
  auto dist = out.distances.to(torch::kFloat);  // [J, 4] d
  const int64_t num_locations = cls.size(0), num_classes = cls.size(1);
  TORCH_CHECK(grid.points.size(0) == num_locations, "assign_image: grid has ", grid.points.size(0),
              " locations, outputs ", num_locations);
  const auto device = cls.device();
  const auto fopts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const auto lopts = torch::TensorOptions().dtype(torch::kLong).device(device);

  auto pi = torch::sigmoid(cls);     // [J, K]
  auto omega = torch::sigmoid(obj);  // [J]

  auto boxes = target.boxes.to(fopts);
  auto labels = target.labels.to(lopts);
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "Target boxes must be [N, 4], got ",
              boxes.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == boxes.size(0),
              "Target labels must be [N] with N = ", boxes.size(0), ", got ", labels.sizes());
  const int64_t num_gts = boxes.size(0);
  if (num_gts > 0) {
    TORCH_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < num_classes,
                "Target labels must be in [0, ", num_classes, "), got ", labels);
  }

  ImageAssignment a;
  auto neg_weight = torch::ones({num_locations, num_classes}, fopts);
  a.max_iou = torch::zeros({num_locations}, fopts);
  a.bag_prob = torch::zeros({num_gts}, fopts);
  a.has_candidates =
      torch::zeros({num_gts}, torch::TensorOptions().dtype(torch::kBool).device(device));
  a.loss_pos_sum = torch::zeros({}, fopts);
  a.loss_reg_sum = torch::zeros({}, fopts);
  a.prior_sum = torch::zeros({}, fopts);
  a.pair_gt = a.pair_loc = torch::zeros({0}, lopts);
  a.prior = a.giou = a.joint = a.pos_weight = torch::zeros({0}, fopts);

  torch::Tensor in_any_gt;  // [J]: inside some gt box; only wanted with ignore regions
  if (num_gts > 0) {
    const auto& points = grid.points.to(fopts);    // [J, 2]
    auto inside = strictly_inside(points, boxes);  // m_nj  [N, J]
    if (target.ignore.defined() && target.ignore.numel() > 0) in_any_gt = inside.any(0);
    if (options.force_topk > 0) {
      // [MMD] force_topk: gts without an interior location take the k locations of largest
      // centre prior G (all levels) as candidates. Selection only: no gradient.
      torch::NoGradGuard no_grad;
      auto empty = (inside.sum(1) == 0).nonzero().view({-1});
      const int64_t k = std::min<int64_t>(options.force_topk, num_locations);
      if (empty.numel() > 0 && k > 0) {
        // G of every location for every such gt at once: [E, J], then the top k per row.
        const int64_t e = empty.numel();
        auto centers = (boxes.narrow(1, 0, 2) + boxes.narrow(1, 2, 2)) / 2;
        auto g =
            prior
                .forward(points.unsqueeze(0).expand({e, num_locations, 2}).reshape({-1, 2}),
                         grid.strides.to(fopts).unsqueeze(0).expand({e, num_locations}).reshape(-1),
                         centers.index_select(0, empty)
                             .unsqueeze(1)
                             .expand({e, num_locations, 2})
                             .reshape({-1, 2}),
                         labels.index_select(0, empty)
                             .unsqueeze(1)
                             .expand({e, num_locations})
                             .reshape(-1))
                .view({e, num_locations});
        auto top = std::get<1>(g.topk(k, 1));  // [E, k]
        inside = inside.index_copy(0, empty, inside.index_select(0, empty).scatter(1, top, true));
      }
    }
    auto nz = inside.nonzero();  // [P, 2], n-major: the write order of [OFF]'s mask
    a.pair_gt = nz.select(1, 0).contiguous();
    a.pair_loc = nz.select(1, 1).contiguous();
    const int64_t num_pairs = nz.size(0);
    auto pair_cls = labels.index_select(0, a.pair_gt);  // c_n per pair

    {
      // Negative side weights: no gradient (section 3.5).
      torch::NoGradGuard no_grad;
      auto pred_boxes = decode_boxes(points, dist.detach());  // [J, 4] B^_j
      a.max_iou = box_iou(boxes, pred_boxes).amax(0);         // [J] u_j, max over all gts
      if (num_pairs > 0) {
        auto v = 1.0 / (1.0 - a.max_iou.index_select(0, a.pair_loc)).clamp_min(kEps);  // [P]
        const float inf = std::numeric_limits<float>::infinity();
        auto vmin = torch::full({num_gts}, inf, fopts)
                        .scatter_reduce(0, a.pair_gt, v, "amin", /*include_self=*/true);
        auto vmax = torch::full({num_gts}, -inf, fopts)
                        .scatter_reduce(0, a.pair_gt, v, "amax", /*include_self=*/true);
        auto lo = vmin.index_select(0, a.pair_gt), hi = vmax.index_select(0, a.pair_gt);
        auto f = (v - lo + kEps) / (hi - lo + kEps);  // [P] in (0, 1]
        // Phi[j, c_n] <- f_nj in (n, j) order: where several same-class gts contain j the last
        // gt wins (deterministic; [OFF]'s CUDA scatter is undefined there).
        auto key = a.pair_loc * num_classes + pair_cls;  // [P]
        auto order = torch::arange(num_pairs, lopts);
        auto last = torch::full({num_locations * num_classes}, -1, lopts)
                        .scatter_reduce(0, key, order, "amax", /*include_self=*/true);
        auto winner = last.index_select(0, key) == order;
        auto phi = torch::zeros({num_locations * num_classes}, fopts);
        phi.index_put_({key.index({winner})}, f.index({winner}));
        neg_weight = 1.0 - phi.view({num_locations, num_classes});  // w-_jk
      }
    }

    if (num_pairs > 0) {
      auto centers = (boxes.narrow(1, 0, 2) + boxes.narrow(1, 2, 2)) / 2;  // [N, 2] g_n
      auto pair_points = points.index_select(0, a.pair_loc);               // [P, 2]
      a.prior = prior.forward(pair_points, grid.strides.to(fopts).index_select(0, a.pair_loc),
                              centers.index_select(0, a.pair_gt), pair_cls);           // [P] G_nj
      auto target_ltrb = encode_boxes(pair_points, boxes.index_select(0, a.pair_gt));  // tau
      a.giou = giou_ltrb(dist.index_select(0, a.pair_loc), target_ltrb);               // [P]
      auto p_loc = torch::exp(-kGiouLambda * (1.0 - a.giou));
      auto p_cls = pi.index({a.pair_loc, pair_cls}) * omega.index_select(0, a.pair_loc);
      a.joint = p_cls * p_loc;                                     // [P] P_nj
      auto e = torch::exp(kConfidenceInvTau * a.joint) * a.prior;  // [P] C_nj * G_nj
      auto e_sum = torch::zeros({num_gts}, fopts).index_add(0, a.pair_gt, e);
      a.pos_weight = e / e_sum.index_select(0, a.pair_gt).clamp_min(kEps);  // [P] w+_nj
      a.bag_prob = torch::zeros({num_gts}, fopts).index_add(0, a.pair_gt, a.pos_weight * a.joint);
      auto counts =
          torch::zeros({num_gts}, lopts).index_add(0, a.pair_gt, torch::ones({num_pairs}, lopts));
      a.has_candidates = counts > 0;
      // BCE(P^bar, 1) = -log P^bar, clamped as PyTorch's BCE. Gts without a candidate are
      // left out: [OFF] gives them a constant 100 with zero gradient (section 3.9).
      a.loss_pos_sum = -torch::log(a.bag_prob.index({a.has_candidates})).clamp_min(kLogClamp).sum();
      // Only when asked for: it would be one more graph node per image in every step.
      if (options.reg_weight > 0) a.loss_reg_sum = (a.pos_weight.detach() * (1.0 - a.giou)).sum();
      a.prior_sum = a.prior.sum();
    }
  }
  if (target.ignore.defined() && target.ignore.numel() > 0) {
    // Ignore regions: the locations strictly inside one and inside no gt box are neither
    // positive nor negative. Without this an unlearnable face (too small, or marked invalid)
    // is trained as background right where a face is, against its learnable neighbours.
    torch::NoGradGuard no_grad;
    auto ignore = target.ignore.to(fopts);
    TORCH_CHECK(ignore.dim() == 2 && ignore.size(1) == 4,
                "Target ignore regions must be [M, 4], got ", ignore.sizes());
    auto ignored = strictly_inside(grid.points.to(fopts), ignore).any(0);  // [J]
    // The gts' own interiors, before force_topk added candidates outside them.
    if (in_any_gt.defined()) ignored = ignored & ~in_any_gt;
    neg_weight = neg_weight.masked_fill(ignored.unsqueeze(1), 0.0);
  }
  a.neg_weight = neg_weight;
  // y_jk = pi_jk * omega_j * w-_jk; focal BCE against 0 with gamma = 2, no alpha inside.
  auto y = pi * omega.unsqueeze(1) * neg_weight;
  a.loss_neg_sum = (y.pow(kFocalGamma) * -torch::log(1.0 - y).clamp_min(kLogClamp)).sum();
  return a;
}

std::map<std::string, torch::Tensor> autoassign_loss(
    const HeadOutput& out, const std::vector<int>& strides, const std::vector<Target>& targets,
    CenterPriorImpl& prior, const MeanReducer& reduce_mean, const AssignOptions& options) {
  auto flat = flatten_outputs(out);
  TORCH_CHECK(flat.size() == targets.size(), "autoassign_loss: ", flat.size(), " images but ",
              targets.size(), " targets");
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (const auto& c : out.cls_logits) shapes.emplace_back(c.size(2), c.size(3));
  const auto device = out.cls_logits[0].device();
  const Grid grid = make_grid(shapes, strides, device);

  auto fopts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto pos_sum = torch::zeros({}, fopts), neg_sum = torch::zeros({}, fopts);
  auto center_sum = torch::zeros({}, fopts), reg_sum = torch::zeros({}, fopts);
  double num_gts = 0, prior_mass = 0;
  for (size_t b = 0; b < flat.size(); ++b) {
    auto a = assign_image(flat[b], grid, targets[b], prior, options);
    pos_sum = pos_sum + a.loss_pos_sum;
    neg_sum = neg_sum + a.loss_neg_sum;
    if (options.reg_weight > 0) reg_sum = reg_sum + a.loss_reg_sum;
    const int64_t n = targets[b].boxes.size(0);
    num_gts += static_cast<double>(n);
    if (a.pair_gt.numel() > 0) {
      prior_mass += a.prior_sum.item<double>();
      // R_i = N_i / sum G m; an image with no interior point contributes 0 ([MMD]'s guard).
      center_sum = center_sum + static_cast<double>(n) / a.prior_sum.clamp_min(kEps);
    }
  }
  if (reduce_mean) {
    num_gts = reduce_mean(num_gts);
    prior_mass = reduce_mean(prior_mass);
  }
  std::map<std::string, torch::Tensor> losses;
  losses["loss_pos"] = kLossAlpha * pos_sum / std::max(1.0, num_gts);
  losses["loss_neg"] = (1.0 - kLossAlpha) * neg_sum / std::max(1.0, prior_mass);
  losses["loss_center"] = (1.0 - kLossAlpha) * center_sum / static_cast<double>(flat.size());
  if (options.reg_weight > 0)
    losses["loss_reg"] = options.reg_weight * reg_sum / std::max(1.0, num_gts);
  // Zero-weighted terms so every trainable tensor is in the graph even when a batch has no
  // candidate (unused parameters would deadlock a distributed all-reduce; section 3.9).
  auto touch = prior.mu.sum() + prior.sigma.sum();
  for (const auto& d : out.distances) touch = touch + d.sum();
  losses["loss_pos"] = losses["loss_pos"] + 0.0 * touch;
  return losses;
}

}  // namespace autoassign
