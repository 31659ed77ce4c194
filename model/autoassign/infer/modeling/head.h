// SPDX-License-Identifier: MIT
// The AutoAssign head (AUTOASSIGN.md 1.3-1.4): classification and regression towers shared by
// all levels, cls/reg/obj 3x3 predictors, a learnable scale per level, and distances
// ReLU(scale * t) * stride in input pixels.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/layers.h"

namespace autoassign {

/// Per-level raw outputs, NCHW.
struct HeadOutput {
  std::vector<torch::Tensor> cls_logits;  // [B, K, H, W]  z
  std::vector<torch::Tensor> obj_logits;  // [B, 1, H, W]  o (ImpObj)
  std::vector<torch::Tensor> distances;   // [B, 4, H, W]  d = (l, t, r, b) in pixels
};

/// Prior probability of the cls bias (p = 0.02, so b = -ln 49) and the initial reg bias.
constexpr double kClsPriorProb = 0.02;
constexpr double kRegBiasInit = 4.0;

class HeadImpl : public torch::nn::Module {
 public:
  HeadImpl(const HeadConfig& config, int num_classes, std::vector<int> strides);
  HeadOutput forward(const std::vector<torch::Tensor>& pyramid);
  /// norm_per_level, inference only: folds each level's BN into its own copy of the shared
  /// tower convs. No-op otherwise; call after eval().
  void fuse_level_norms();

  ConvNormAct cls_pred{nullptr}, reg_pred{nullptr}, obj_pred{nullptr};
  torch::Tensor scales;  // [L] beta_l

 private:
  std::vector<int> strides_;
  double min_distance_ = 0.0;  // HeadConfig::min_distance, in strides
  // With share_tower only cls_tower_ exists; it feeds all three predictors.
  torch::nn::Sequential cls_tower_{nullptr}, reg_tower_{nullptr};
  // norm_per_level: each tower's BatchNorms, level-major ([level * num_convs + conv]).
  torch::nn::ModuleList cls_norms_{nullptr}, reg_norms_{nullptr};
  // After fuse_level_norms: (weight, bias) per level and conv, in the norms' order.
  std::vector<torch::Tensor> cls_folded_, reg_folded_;
  torch::Tensor run_tower(torch::nn::Sequential& tower, torch::nn::ModuleList& norms,
                          const std::vector<torch::Tensor>& folded, size_t level, torch::Tensor x);
};
TORCH_MODULE(Head);

}  // namespace autoassign
