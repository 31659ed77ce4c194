// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/head.h"

#include <cmath>

#include <ATen/autocast_mode.h>

namespace autoassign {

HeadImpl::HeadImpl(const HeadConfig& config, int num_classes, std::vector<int> strides)
    : strides_(std::move(strides)), min_distance_(config.min_distance) {
  const int64_t c = config.channels;
  cls_tower_ = torch::nn::Sequential();
  if (!config.share_tower) reg_tower_ = torch::nn::Sequential();
  const auto levels = static_cast<int>(strides_.size());
  for (int i = 0; i < config.num_convs; ++i) {
    // Tower convs keep their bias even before a norm, as [OFF] and [MMD] (conv_bias=True).
    // With norm_per_level the conv stays shared and the norm and ReLU move to the per-level
    // lists below.
    auto options = ConvNormActOptions(c, c, 3)
                       .norm(config.norm_per_level ? "none" : config.norm)
                       .relu(!config.norm_per_level)
                       .gn_groups(config.gn_groups)
                       .bias(true)
                       .reparam(config.reparam);
    cls_tower_->push_back(ConvNormAct(options));
    if (reg_tower_) reg_tower_->push_back(ConvNormAct(options));
  }
  register_module(config.share_tower ? "tower" : "cls_tower", cls_tower_);
  if (reg_tower_) register_module("reg_tower", reg_tower_);
  if (config.norm_per_level) {
    // Index level * num_convs + conv. The names hold ".norm_" so the trainer's
    // no-weight-decay rule for norm parameters covers them.
    cls_norms_ = torch::nn::ModuleList();
    if (reg_tower_) reg_norms_ = torch::nn::ModuleList();
    for (int l = 0; l < levels; ++l) {
      for (int i = 0; i < config.num_convs; ++i) {
        cls_norms_->push_back(torch::nn::BatchNorm2d(c));
        if (reg_norms_) reg_norms_->push_back(torch::nn::BatchNorm2d(c));
      }
    }
    register_module("norm_levels", cls_norms_);
    if (reg_norms_) register_module("norm_levels_reg", reg_norms_);
  }
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
      // The dict must outlive the pointer find() returns into it (ASan found the temporary's
      // use after free).
      const auto params = unit->named_parameters(false);
      if (const auto* w1 = params.find("weight_1x1")) {
        torch::nn::init::normal_(*w1, 0.0, 0.01);
      }
    }
  }
  cls_pred->bias.fill_(-std::log((1.0 - kClsPriorProb) / kClsPriorProb));  // -ln 49
  reg_pred->bias.fill_(kRegBiasInit);
}

torch::Tensor HeadImpl::run_tower(torch::nn::Sequential& tower, torch::nn::ModuleList& norms,
                                  const std::vector<torch::Tensor>& folded, size_t level,
                                  torch::Tensor x) {
  if (!norms) return tower->is_empty() ? x : tower->forward(x);
  const size_t n = tower->size();
  for (size_t i = 0; i < n; ++i) {
    if (!folded.empty()) {
      const size_t k = 2 * (level * n + i);
      x = torch::conv2d(x, folded[k], folded[k + 1], 1, 1).relu_();
    } else {
      x = tower[i]->as<ConvNormActImpl>()->forward(x);
      x = norms[level * n + i]->as<torch::nn::BatchNorm2dImpl>()->forward(x).relu_();
    }
  }
  return x;
}

void HeadImpl::fuse_level_norms() {
  if (!cls_norms_ || !cls_folded_.empty()) return;
  TORCH_CHECK(!is_training(), "Head::fuse_level_norms: call eval() first");
  torch::NoGradGuard no_grad;
  // Each level gets its own copy of the shared conv with that level's BN folded in, as
  // ConvNormAct folds its BN: the per-level norms then cost nothing at inference. The copies
  // are parameters (not trained) so that layout and precision changes reach them.
  auto fold = [&](torch::nn::Sequential& tower, torch::nn::ModuleList& norms,
                  const std::string& name, std::vector<torch::Tensor>& out) {
    const size_t n = tower->size();
    for (size_t k = 0; k < norms->size(); ++k) {
      auto* conv = tower[k % n]->as<ConvNormActImpl>();
      auto* bn = norms[k]->as<torch::nn::BatchNorm2dImpl>();
      auto scale = bn->weight * (bn->running_var + bn->options.eps()).rsqrt();
      auto shift = bn->bias - bn->running_mean * scale;
      auto w = conv->weight * scale.view({-1, 1, 1, 1});
      auto b = conv->bias * scale + shift;
      const auto id = name + "_" + std::to_string(k);
      out.push_back(register_parameter(id + "_weight",
                                       w.contiguous(conv->weight.suggest_memory_format()), false));
      out.push_back(register_parameter(id + "_bias", b, false));
    }
  };
  fold(cls_tower_, cls_norms_, "folded", cls_folded_);
  if (reg_norms_) fold(reg_tower_, reg_norms_, "folded_reg", reg_folded_);
}

namespace {

// Turns CPU autocast off for its scope and restores it after (the flag is thread-local).
class NoCpuAutocast {
 public:
  NoCpuAutocast() : was_(at::autocast::is_cpu_enabled()) {
    if (was_) at::autocast::set_cpu_enabled(false);
  }
  ~NoCpuAutocast() {
    if (was_) at::autocast::set_cpu_enabled(true);
  }
  NoCpuAutocast(const NoCpuAutocast&) = delete;
  NoCpuAutocast& operator=(const NoCpuAutocast&) = delete;

 private:
  bool was_;
};

}  // namespace

HeadOutput HeadImpl::forward(const std::vector<torch::Tensor>& pyramid) {
  TORCH_CHECK(pyramid.size() == strides_.size(), "Head: expected ", strides_.size(),
              " pyramid levels, got ", pyramid.size());
  HeadOutput out;
  for (size_t l = 0; l < pyramid.size(); ++l) {
    auto cls_feat = run_tower(cls_tower_, cls_norms_, cls_folded_, l, pyramid[l]);
    auto reg_feat =
        !reg_tower_ ? cls_feat : run_tower(reg_tower_, reg_norms_, reg_folded_, l, pyramid[l]);
    // The predictors may run in a wider type than the towers (bf16 inference keeps them in
    // fp32: distances in pixels lose ~0.4% in bf16). bf16 training autocasts the network; the
    // predictors and level scales stay out of it, so that the logits and distances the loss
    // sees are computed in fp32, as at inference.
    NoCpuAutocast fp32_predictors;
    const auto pred_type = cls_pred->weight.scalar_type();
    if (cls_feat.scalar_type() != pred_type) cls_feat = cls_feat.to(pred_type);
    if (reg_feat.scalar_type() != pred_type) reg_feat = reg_feat.to(pred_type);
    out.cls_logits.push_back(cls_pred->forward(cls_feat));
    out.obj_logits.push_back(obj_pred->forward(reg_feat));
    // clamp + out-of-place multiply: ReLU followed by an in-place *stride breaks autograd
    // (mmdet PR #7074).
    auto t = reg_pred->forward(reg_feat);
    out.distances.push_back(torch::clamp_min(scales[l] * t, min_distance_) * strides_[l]);
  }
  return out;
}

}  // namespace autoassign
