// SPDX-License-Identifier: MIT
#include "autoassign/model.h"

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
  if (channels_last_) {
    return head->forward(
        fpn->forward(backbone->forward(images.contiguous(torch::MemoryFormat::ChannelsLast))));
  }
  return head->forward(fpn->forward(backbone->forward(images)));
}

void AutoAssignImpl::set_channels_last(bool on) {
  torch::NoGradGuard no_grad;
  const auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  }
  channels_last_ = on;
}

void AutoAssignImpl::prepare_for_inference() {
  eval();
  fuse_conv_norm(*this);
}

}  // namespace autoassign
