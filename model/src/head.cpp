// SPDX-License-Identifier: MIT
#include "autoassign/head.h"

#include <cmath>

namespace autoassign {

HeadImpl::HeadImpl(const HeadConfig& config, int num_classes, std::vector<int> strides)
    : strides_(std::move(strides)) {
  const int64_t c = config.channels;
  cls_tower_ = torch::nn::Sequential();
  if (!config.share_tower) reg_tower_ = torch::nn::Sequential();
  for (int i = 0; i < config.num_convs; ++i) {
    // Tower convs keep their bias even before a norm, as [OFF] and [MMD] (conv_bias=True).
    auto options = ConvNormActOptions(c, c, 3)
                       .norm(config.norm)
                       .gn_groups(config.gn_groups)
                       .bias(true)
                       .reparam(config.reparam);
    cls_tower_->push_back(ConvNormAct(options));
    if (reg_tower_) reg_tower_->push_back(ConvNormAct(options));
  }
  register_module(config.share_tower ? "tower" : "cls_tower", cls_tower_);
  if (reg_tower_) register_module("reg_tower", reg_tower_);
  auto pred = [&](int64_t out) {
    return ConvNormAct(ConvNormActOptions(c, out, 3).norm("none").relu(false));
  };
  cls_pred = register_module("cls_pred", pred(num_classes));
  reg_pred = register_module("reg_pred", pred(4));
  obj_pred = register_module("obj_pred", pred(1));
  scales = register_parameter("scales", torch::ones({static_cast<int64_t>(strides_.size())}));

  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* unit = m->as<ConvNormActImpl>()) {
      torch::nn::init::normal_(unit->weight, 0.0, 0.01);
      if (unit->bias.defined()) unit->bias.zero_();
      // A reparam unit's 1x1 branch starts like its 3x3 (the paper's std 0.01).
      if (auto* w1 = unit->named_parameters(false).find("weight_1x1")) {
        torch::nn::init::normal_(*w1, 0.0, 0.01);
      }
    }
  }
  cls_pred->bias.fill_(-std::log((1.0 - kClsPriorProb) / kClsPriorProb));  // -ln 49
  reg_pred->bias.fill_(kRegBiasInit);
}

HeadOutput HeadImpl::forward(const std::vector<torch::Tensor>& pyramid) {
  TORCH_CHECK(pyramid.size() == strides_.size(), "Head: expected ", strides_.size(),
              " pyramid levels, got ", pyramid.size());
  HeadOutput out;
  for (size_t l = 0; l < pyramid.size(); ++l) {
    auto cls_feat = cls_tower_->is_empty() ? pyramid[l] : cls_tower_->forward(pyramid[l]);
    auto reg_feat = !reg_tower_              ? cls_feat
                    : reg_tower_->is_empty() ? pyramid[l]
                                             : reg_tower_->forward(pyramid[l]);
    out.cls_logits.push_back(cls_pred->forward(cls_feat));
    out.obj_logits.push_back(obj_pred->forward(reg_feat));
    // clamp + out-of-place multiply: ReLU followed by an in-place *stride breaks autograd
    // (mmdet PR #7074).
    auto t = reg_pred->forward(reg_feat);
    out.distances.push_back(torch::clamp_min(scales[l] * t, 0.0) * strides_[l]);
  }
  return out;
}

}  // namespace autoassign
