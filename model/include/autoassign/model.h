// SPDX-License-Identifier: MIT
// The AutoAssign network: backbone -> FPN -> head, plus the centre prior the loss trains.
#pragma once

#include <torch/torch.h>

#include "autoassign/backbone.h"
#include "autoassign/center_prior.h"
#include "autoassign/config.h"
#include "autoassign/fpn.h"
#include "autoassign/head.h"

namespace autoassign {

class AutoAssignImpl : public torch::nn::Module {
 public:
  explicit AutoAssignImpl(const ModelConfig& config);
  /// images: normalised [B, 3, H, W] -> per-level head outputs.
  HeadOutput forward(const torch::Tensor& images);
  /// eval() and fold BatchNorms into convolutions. The model can no longer be trained.
  void prepare_for_inference();

  const ModelConfig& config() const { return config_; }
  const std::vector<int>& strides() const { return strides_; }

  Backbone backbone{nullptr};
  Fpn fpn{nullptr};
  Head head{nullptr};
  CenterPrior center_prior{nullptr};

 private:
  ModelConfig config_;
  std::vector<int> strides_;
};
TORCH_MODULE(AutoAssign);

}  // namespace autoassign
