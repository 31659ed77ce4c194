// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/model.h"

namespace autoassign {

AutoAssignImpl::AutoAssignImpl(const ModelConfig& config)
    : config_(config), strides_(config.strides()) {
  config_.validate();
  const int max_level = config.fpn.levels.back();
  backbone = register_module("backbone", Backbone(config.backbone, std::min(max_level, 5) - 2));
  fpn = register_module("fpn", Fpn(config.fpn, backbone->out_channels()));
  head = register_module("head", Head(config.head, config.num_classes, strides_));
  center_prior = register_module("center_prior", CenterPrior(config.num_classes));
}

HeadOutput AutoAssignImpl::forward(const torch::Tensor& images) {
  auto x = images.scalar_type() == precision_ ? images : images.to(precision_);
  if (channels_last_) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  return head->forward(fpn->forward(backbone->forward(x)));
}

void AutoAssignImpl::set_precision(torch::ScalarType type) {
  TORCH_CHECK(type == torch::kFloat || type == torch::kBFloat16 || type == torch::kHalf,
              "AutoAssign::set_precision: fp32, bf16 or fp16, got ", type);
  TORCH_CHECK(type == torch::kFloat || !is_training(),
              "AutoAssign::set_precision: lower precision is for inference (train with autocast)");
  backbone->to(type);
  fpn->to(type);
  head->to(type);
  // What needs range and exactness stays fp32: the predictors and the per-level scales.
  head->cls_pred->to(torch::kFloat);
  head->reg_pred->to(torch::kFloat);
  head->obj_pred->to(torch::kFloat);
  {
    torch::NoGradGuard no_grad;
    head->scales.set_data(head->scales.to(torch::kFloat));
  }
  precision_ = type;
}

void AutoAssignImpl::set_channels_last(bool on) {
  torch::NoGradGuard no_grad;
  const auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  }
  channels_last_ = on;
}

void AutoAssignImpl::set_postprocess(const PostprocessConfig& postprocess) {
  ModelConfig changed = config_;
  changed.postprocess = postprocess;
  changed.validate();
  config_ = std::move(changed);
}

void AutoAssignImpl::prepare_for_inference() {
  eval();
  fuse_conv_norm(*this);
  head->fuse_level_norms();
}

}  // namespace autoassign
