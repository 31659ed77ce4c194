// SPDX-License-Identifier: MIT
// Backbones: ResNet-18/34/50 (the bottleneck's stride in the 1x1, caffe style, or in the 3x3)
// and a plain 3x3-conv network for CPU real time. Each returns C3, C4, C5 (strides 8, 16, 32).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/layers.h"

namespace autoassign {

/// Feature maps at strides 8, 16, 32 ("C3", "C4", "C5"). A backbone asked for fewer levels
/// stops early and returns only those.
using Features = std::vector<torch::Tensor>;

class BackboneImpl : public torch::nn::Module {
 public:
  /// `num_outputs` is how many of C3, C4, C5 the FPN uses (1..3).
  BackboneImpl(const BackboneConfig& config, int num_outputs);
  Features forward(const torch::Tensor& x);
  /// Channels of C3, C4, C5 (the first num_outputs of them).
  const std::vector<int64_t>& out_channels() const { return out_channels_; }
  /// Puts frozen stages back in eval mode after a train() call (their BN must not update).
  void train(bool on = true) override;

 private:
  BackboneConfig config_;
  int num_outputs_;
  std::vector<int64_t> out_channels_;
  torch::nn::Sequential stem_{nullptr};
  std::vector<torch::nn::Sequential> stages_;  // strides 4, 8, 16, 32
};
TORCH_MODULE(Backbone);

}  // namespace autoassign
