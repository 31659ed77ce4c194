// SPDX-License-Identifier: MIT
// The AutoAssign network: backbone -> FPN -> head, plus the centre prior the loss trains.
#pragma once

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/backbone.h"
#include "autoassign/infer/modeling/center_prior.h"
#include "autoassign/infer/modeling/fpn.h"
#include "autoassign/infer/modeling/head.h"

namespace autoassign {

class AutoAssignImpl : public torch::nn::Module {
 public:
  explicit AutoAssignImpl(const ModelConfig& config);
  /// images: normalised [B, 3, H, W] -> per-level head outputs.
  HeadOutput forward(const torch::Tensor& images);
  /// eval() and fold BatchNorms into convolutions. The model can no longer be trained.
  void prepare_for_inference();
  /// Channels-last (NHWC) weights and activations: oneDNN runs small-channel and strided
  /// convolutions much faster in NHWC on CPUs (measured in `bench --layout`); the outputs are
  /// the same tensors in another memory layout.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }
  /// Inference only (after prepare_for_inference): the backbone, FPN and head towers hold
  /// their weights and run in `type` (kFloat or kBFloat16 on CPUs, kHalf on CUDA); the input
  /// is cast on entry, and the head's predictors and level scales stay fp32, so the outputs
  /// (logits, distances in pixels) are fp32 whatever the type.
  void set_precision(torch::ScalarType type);
  torch::ScalarType precision() const { return precision_; }

  const ModelConfig& config() const { return config_; }
  /// New post-processing defaults (the ones save_model writes and Detector starts from);
  /// validated with the rest of the config first, so a bad value changes nothing.
  void set_postprocess(const PostprocessConfig& postprocess);
  const std::vector<int>& strides() const { return strides_; }

  Backbone backbone{nullptr};
  Fpn fpn{nullptr};
  Head head{nullptr};
  CenterPrior center_prior{nullptr};

 private:
  ModelConfig config_;
  std::vector<int> strides_;
  bool channels_last_ = false;
  torch::ScalarType precision_ = torch::kFloat;
};
TORCH_MODULE(AutoAssign);

}  // namespace autoassign
