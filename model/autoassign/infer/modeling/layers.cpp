// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/layers.h"

namespace autoassign {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_buffer("weight", torch::ones({channels}));
  bias = register_buffer("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}) - eps);
}

std::pair<torch::Tensor, torch::Tensor> FrozenBatchNorm2dImpl::scale_shift() const {
  auto scale = weight * (running_var + eps).rsqrt();
  return {scale, bias - running_mean * scale};
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  auto [scale, shift] = scale_shift();
  return x * scale.view({1, -1, 1, 1}) + shift.view({1, -1, 1, 1});
}

namespace {
thread_local FlopCounter* tls_flop_counter = nullptr;
}  // namespace

FlopCounter::FlopCounter() : previous_(tls_flop_counter) { tls_flop_counter = this; }
FlopCounter::~FlopCounter() { tls_flop_counter = previous_; }
FlopCounter* FlopCounter::current() { return tls_flop_counter; }

int64_t group_norm_groups(int64_t channels, int64_t preferred) {
  int64_t g = preferred;
  while (g > 1 && channels % g != 0) g /= 2;
  return g;
}

ConvNormActImpl::ConvNormActImpl(const ConvNormActOptions& options_) : options(options_) {
  const auto& o = options;
  TORCH_CHECK(o.in() > 0 && o.out() > 0 && o.kernel() > 0, "ConvNormAct: bad shape in=", o.in(),
              " out=", o.out(), " kernel=", o.kernel());
  weight = register_parameter("weight", torch::empty({o.out(), o.in(), o.kernel(), o.kernel()}));
  // Same default init as torch::nn::Conv2d; callers re-initialise where the paper says.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  const bool has_bias = o.bias() || o.norm() == "none";
  if (has_bias) bias = register_parameter("bias", torch::zeros({o.out()}));
  if (o.norm() == "bn") {
    bn_ = register_module("norm", torch::nn::BatchNorm2d(o.out()));
  } else if (o.norm() == "frozen_bn") {
    frozen_bn_ = register_module("norm", FrozenBatchNorm2d(o.out()));
  } else if (o.norm() == "gn") {
    gn_ = register_module("norm",
                          torch::nn::GroupNorm(group_norm_groups(o.out(), o.gn_groups()), o.out()));
  } else {
    TORCH_CHECK(o.norm() == "none", "ConvNormAct: unknown norm '", o.norm(), "'");
  }
  if (o.reparam()) {
    TORCH_CHECK(o.kernel() == 3 && o.norm() == "bn",
                "ConvNormAct: reparam needs a 3x3 kernel with norm bn, got kernel ", o.kernel(),
                " norm ", o.norm());
    weight_1x1_ = register_parameter("weight_1x1", torch::empty({o.out(), o.in(), 1, 1}));
    torch::nn::init::kaiming_uniform_(weight_1x1_, std::sqrt(5.0));
    bn_1x1_ = register_module("norm_1x1", torch::nn::BatchNorm2d(o.out()));
    if (o.in() == o.out() && o.stride() == 1) {
      bn_id_ = register_module("norm_id", torch::nn::BatchNorm2d(o.out()));
    }
  }
}

torch::Tensor ConvNormActImpl::forward(const torch::Tensor& x) {
  const int64_t pad = options.kernel() / 2;
  auto y = torch::conv2d(x, weight, bias, {options.stride(), options.stride()}, {pad, pad});
  if (auto* counter = FlopCounter::current()) {
    counter->add(2.0 * static_cast<double>(y.numel()) *
                 static_cast<double>(options.in() * options.kernel() * options.kernel()));
  }
  if (!fused_) {
    if (bn_) y = bn_->forward(y);
    if (frozen_bn_) y = frozen_bn_->forward(y);
    if (bn_1x1_) {
      // The 1x1 branch runs as a 3x3 conv whose kernel is the 1x1 weight at the centre tap
      // (zeros elsewhere): the same result, through the same oneDNN path as the main 3x3.
      // LibTorch 1.13's CPU 1x1 convolutions on these shapes (strided, or 3-channel, sliced)
      // corrupted the heap in reparam networks; the 3x3 path is the one every plain net uses.
      auto k3 = torch::constant_pad_nd(weight_1x1_, {1, 1, 1, 1});
      y = y +
          bn_1x1_->forward(torch::conv2d(x, k3, {}, {options.stride(), options.stride()}, {1, 1}));
    }
    if (bn_id_) y = y + bn_id_->forward(x);
  }
  if (gn_) {
    // Under bf16 autocast (training) the conv gives bf16 while the GN affine stays fp32:
    // LibTorch 1.13's CPU group_norm refuses mixed types, and a normalisation wants fp32
    // statistics anyway. At bf16 inference the GN weights are bf16 too and nothing is cast.
    const auto type = gn_->weight.scalar_type();
    y = gn_->forward(y.scalar_type() == type ? y : y.to(type));
  }
  // In place: the conv, norm and sum before it keep no output for backward, and a fresh
  // output costs one more pass over the activations per layer (~13% of face-rt's forward on
  // an AVX2 CPU; not page faults: malloc's mmap thresholds made no difference).
  return options.relu() ? torch::relu_(y) : y;
}

namespace {

// (scale, shift) of an inference-mode BatchNorm: bn(x) = x * scale + shift.
std::pair<torch::Tensor, torch::Tensor> bn_scale_shift(const torch::nn::BatchNorm2d& bn) {
  auto scale = bn->weight * (bn->running_var + bn->options.eps()).rsqrt();
  return {scale, bn->bias - bn->running_mean * scale};
}

}  // namespace

void ConvNormActImpl::fuse() {
  if (fused_ || !(bn_ || frozen_bn_)) return;
  TORCH_CHECK(!is_training() || frozen_bn_, "ConvNormAct::fuse: call eval() first");
  torch::NoGradGuard no_grad;
  torch::Tensor scale, shift;
  if (frozen_bn_) {
    std::tie(scale, shift) = frozen_bn_->scale_shift();
  } else {
    std::tie(scale, shift) = bn_scale_shift(bn_);
  }
  weight.mul_(scale.view({-1, 1, 1, 1}));
  auto new_bias = bias.defined() ? bias * scale + shift : shift.clone();
  // RepVGG folding: a 1x1 kernel is a 3x3 kernel with only its centre tap, and the identity is
  // a 1x1 kernel with 1 on the diagonal; each branch's BN scales its kernel and adds its shift.
  const int64_t c = weight.size(2) / 2;
  if (bn_1x1_) {
    auto [s1, b1] = bn_scale_shift(bn_1x1_);
    weight.index({torch::indexing::Slice(), torch::indexing::Slice(), c, c})
        .add_(weight_1x1_.index({torch::indexing::Slice(), torch::indexing::Slice(), 0, 0}) *
              s1.view({-1, 1}));
    new_bias = new_bias + b1;
  }
  if (bn_id_) {
    auto [si, bi] = bn_scale_shift(bn_id_);
    weight.index({torch::indexing::Slice(), torch::indexing::Slice(), c, c}).add_(torch::diag(si));
    new_bias = new_bias + bi;
  }
  // The bias becomes a parameter of its own name so a fused model still saves and loads.
  if (bias.defined()) {
    bias.copy_(new_bias);
  } else {
    bias = register_parameter("fused_bias", new_bias);
  }
  fused_ = true;
}

void fuse_conv_norm(torch::nn::Module& module) {
  for (auto& child : module.modules(/*include_self=*/true)) {
    if (auto* unit = child->as<ConvNormActImpl>()) unit->fuse();
  }
}

void c2_xavier_fill(torch::Tensor& weight, torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, /*a=*/1.0);
  if (bias.defined()) bias.zero_();
}

}  // namespace autoassign
