// SPDX-License-Identifier: MIT
// Building blocks shared by the backbones, FPN and head: FrozenBatchNorm2d and a conv + norm +
// ReLU unit that folds its BatchNorm into the convolution for inference.
#pragma once

#include <string>

#include <torch/torch.h>

namespace autoassign {

/// BatchNorm with fixed affine and statistics (all buffers, nothing trains), as detectron2's
/// FrozenBatchNorm2d: y = x * weight / sqrt(var + eps) + bias - mean * scale.
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t channels, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  /// Per-channel (scale, shift) such that forward(x) = x * scale + shift.
  std::pair<torch::Tensor, torch::Tensor> scale_shift() const;

  torch::Tensor weight, bias, running_mean, running_var;
  double eps;
};
TORCH_MODULE(FrozenBatchNorm2d);

/// Group count for GroupNorm over `channels`: 32 where it divides, else the largest power of
/// two that does (small "fast" stages have 16 or 48 channels).
int64_t group_norm_groups(int64_t channels, int64_t preferred = 32);

struct ConvNormActOptions {
  ConvNormActOptions(int64_t in, int64_t out, int64_t kernel)
      : in_(in), out_(out), kernel_(kernel) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(int64_t, out);
  TORCH_ARG(int64_t, kernel);
  TORCH_ARG(int64_t, stride) = 1;
  /// "none", "bn", "frozen_bn" or "gn".
  TORCH_ARG(std::string, norm) = "bn";
  TORCH_ARG(int64_t, gn_groups) = 32;
  /// Conv bias; without a norm a conv always has one.
  TORCH_ARG(bool, bias) = false;
  TORCH_ARG(bool, relu) = true;
  /// RepVGG-style training form (3x3 kernels with a BatchNorm only): a parallel 1x1 conv + BN
  /// branch and, where in == out and stride 1, an identity BN branch, summed before the ReLU.
  /// fuse() folds all branches into the one 3x3 conv, so inference costs a plain conv.
  TORCH_ARG(bool, reparam) = false;
};

/// conv(kxk, padding k/2) -> norm -> ReLU. Holds its own weight so that fuse() can fold a
/// BatchNorm (and, for `reparam` units, the 1x1 and identity branches) into it; the graph then
/// is one oneDNN convolution (+ ReLU) per unit.
class ConvNormActImpl : public torch::nn::Module {
 public:
  explicit ConvNormActImpl(const ConvNormActOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  /// Folds BN/FrozenBN statistics into weight and bias (inference only; call after eval()).
  /// A GroupNorm cannot be folded and is left alone.
  void fuse();
  bool fused() const { return fused_; }

  ConvNormActOptions options;
  torch::Tensor weight, bias;  // bias undefined when the conv has none and is not fused

 private:
  torch::nn::BatchNorm2d bn_{nullptr};
  FrozenBatchNorm2d frozen_bn_{nullptr};
  torch::nn::GroupNorm gn_{nullptr};
  // reparam branches (training form only; folded away by fuse()).
  torch::Tensor weight_1x1_;
  torch::nn::BatchNorm2d bn_1x1_{nullptr}, bn_id_{nullptr};
  bool fused_ = false;
};
TORCH_MODULE(ConvNormAct);

/// While alive, adds the FLOPs (2 x multiply-adds) of every ConvNormAct forward on this thread.
/// All convolutions of the model are ConvNormAct units, so this is the model's conv FLOPs.
class FlopCounter {
 public:
  FlopCounter();
  ~FlopCounter();
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;
  double flops() const { return flops_; }
  static FlopCounter* current();
  void add(double flops) { flops_ += flops; }

 private:
  double flops_ = 0;
  FlopCounter* previous_;
};

/// Calls fuse() on every ConvNormAct below `module` (put the model in eval() first).
void fuse_conv_norm(torch::nn::Module& module);

/// Kaiming-uniform with a = 1 and zero bias: "Caffe2 Xavier" (c2_xavier_fill), used by the FPN.
void c2_xavier_fill(torch::Tensor& weight, torch::Tensor& bias);

}  // namespace autoassign
