// SPDX-License-Identifier: MIT
// AutoAssign's differentiable label assignment and losses (AUTOASSIGN.md section 3): the
// positive bag loss, the negative focal loss weighted by the min-max-normalised IoU, and the
// centre-prior regulariser, with [OFF]'s weights and normalisers.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "autoassign/infer/box_coder.h"
#include "autoassign/infer/modeling/center_prior.h"
#include "autoassign/infer/modeling/head.h"

namespace autoassign {

// Constants of [OFF] (auto_assign.py / config.py).
constexpr double kLossAlpha = 0.25;        // L_pos weight; L_neg and L_center get 1 - alpha
constexpr double kGiouLambda = 5.0;        // P_loc = exp(-lambda * (1 - GIoU))
constexpr double kConfidenceInvTau = 3.0;  // C = exp(P / tau), tau = 1/3
constexpr double kFocalGamma = 2.0;
constexpr double kEps = 1e-12;
constexpr double kLogClamp = -100.0;  // PyTorch BCE clamps log at -100

/// Ground truth of one image, in input pixels (after resize, before padding).
struct Target {
  torch::Tensor boxes;   // [N, 4] float (x1, y1, x2, y2)
  torch::Tensor labels;  // [N] int64, 0..K-1
  /// [M, 4] regions that are neither object nor background (WIDER "invalid" faces, COCO
  /// crowds, faces too small to learn): a location strictly inside one and inside no gt gets
  /// no negative loss, for any class. Undefined or empty: none, as in [OFF].
  torch::Tensor ignore;
};

/// One image's outputs flattened over the levels (the order of Grid).
struct FlatOutputs {
  torch::Tensor cls_logits;  // [J, K]
  torch::Tensor obj_logits;  // [J]
  torch::Tensor distances;   // [J, 4]
};
/// Per-level NCHW head outputs -> per-image flat [J, ...] tensors, P3 first, row-major.
std::vector<FlatOutputs> flatten_outputs(const HeadOutput& out);

/// Everything the assignment computes for one image; the loss uses it and the tests check it.
/// Candidate pairs are (gt n, location j) with j strictly inside box n, in n-major order.
struct ImageAssignment {
  torch::Tensor pair_gt;         // [P] int64 n
  torch::Tensor pair_loc;        // [P] int64 j
  torch::Tensor prior;           // [P] G_nj (with grad to mu, sigma)
  torch::Tensor giou;            // [P] GIoU(B^_j, b_n)
  torch::Tensor joint;           // [P] P_nj = pi_{j,c_n} * omega_j * exp(-lambda (1 - GIoU))
  torch::Tensor pos_weight;      // [P] w+_nj
  torch::Tensor bag_prob;        // [N] P^bar_n (0 for a gt with no candidate)
  torch::Tensor has_candidates;  // [N] bool
  torch::Tensor max_iou;         // [J] u_j (no grad)
  torch::Tensor neg_weight;      // [J, K] w-_jk = 1 - Phi_jk, 0 in ignore regions (no grad)
  torch::Tensor loss_pos_sum;    // scalar: sum_n -log P^bar_n over gts with candidates
  torch::Tensor loss_reg_sum;    // scalar: sum_nj w+_nj (1 - GIoU_nj), w+ without grad; 0
                                 // unless AssignOptions::reg_weight > 0
  torch::Tensor loss_neg_sum;    // scalar: sum_jk y^2 * -log(1 - y)
  torch::Tensor prior_sum;       // scalar: sum_nj G_nj m_nj (with grad)
};

/// Choices outside [OFF]'s algorithm, off by default.
struct AssignOptions {
  /// [MMD]'s force_topk: a gt with no location strictly inside it (a box under about one P3
  /// stride) takes the `force_topk` locations of largest centre prior G as its candidates,
  /// instead of having none (AUTOASSIGN.md 3.2, 3.9). 0 = [OFF]: such gts are never learnt and
  /// their surroundings are trained as background. Small faces are mostly such gts.
  int force_topk = 0;
  /// Weight of an explicit localisation term, not in [OFF]: the mean over gts of
  /// sum_j w+_nj (1 - GIoU_nj), with the positive weights w+ taken as constants. AutoAssign
  /// learns boxes only through P_loc inside the bag, whose gradient fades where the
  /// classification confidence is low (small faces); this term keeps pulling the boxes the
  /// assignment trusts. 0 = off (the authors' loss).
  double reg_weight = 0.0;
};

/// Runs the assignment of section 3.10 for one image.
ImageAssignment assign_image(const FlatOutputs& out, const Grid& grid, const Target& target,
                             CenterPriorImpl& prior, const AssignOptions& options = {});

/// Averages a scalar over the processes of a distributed job (identity for one process).
using MeanReducer = std::function<double(double)>;

/// The batch loss: {"loss_pos", "loss_neg", "loss_center"}, each a scalar fp32 tensor, plus
/// "loss_reg" (AssignOptions::reg_weight times the mean of loss_reg_sum over gts) when
/// reg_weight > 0. The training loss is the sum of all entries.
/// `reduce_mean` all-reduces N_tot and Z as [OFF] does under DDP (section 3.7).
std::map<std::string, torch::Tensor> autoassign_loss(const HeadOutput& out,
                                                     const std::vector<int>& strides,
                                                     const std::vector<Target>& targets,
                                                     CenterPriorImpl& prior,
                                                     const MeanReducer& reduce_mean = nullptr,
                                                     const AssignOptions& options = {});

}  // namespace autoassign
