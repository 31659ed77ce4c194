// SPDX-License-Identifier: MIT
// Feature pyramid: laterals + top-down on C3..C5, P6 from C5 (3x3/s2) and P7 from ReLU(P6),
// no normalisation, Caffe2-Xavier init (AUTOASSIGN.md 1.2).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/layers.h"

namespace autoassign {

class FpnImpl : public torch::nn::Module {
 public:
  /// `in_channels`: channels of C3, C4, C5 (as many as the levels up to P5 need).
  FpnImpl(const FpnConfig& config, const std::vector<int64_t>& in_channels);
  /// Features C3.. -> P3..P(max level), each with config.channels channels.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);

 private:
  FpnConfig config_;
  std::vector<ConvNormAct> lateral_, output_;
  ConvNormAct p6_{nullptr}, p7_{nullptr};
};
TORCH_MODULE(Fpn);

}  // namespace autoassign
