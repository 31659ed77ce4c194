// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/fpn.h"

#include "autoassign/infer/modeling/layers.h"

namespace autoassign {

FpnImpl::FpnImpl(const FpnConfig& config, const std::vector<int64_t>& in_channels)
    : config_(config) {
  const int max_level = config.levels.back();
  const size_t num_inputs = static_cast<size_t>(std::min(max_level, 5) - 2);
  TORCH_CHECK(in_channels.size() == num_inputs, "Fpn: levels up to P", max_level, " need ",
              num_inputs, " backbone features, got ", in_channels.size());
  const int64_t c = config.channels;
  // Plain convs with bias: no normalisation in the FPN.
  auto conv = [](int64_t in, int64_t out, int64_t k, int64_t stride) {
    return ConvNormAct(ConvNormActOptions(in, out, k).stride(stride).norm("none").relu(false));
  };
  for (size_t i = 0; i < num_inputs; ++i) {
    const auto name = std::to_string(i + 3);
    lateral_.push_back(register_module("lateral" + name, conv(in_channels[i], c, 1, 1)));
    output_.push_back(register_module("output" + name, conv(c, c, 3, 1)));
  }
  // P6 comes from C5 ("on_input"), not P5: the cvpods AutoAssign was trained that way.
  if (max_level >= 6) p6_ = register_module("p6", conv(in_channels.back(), c, 3, 2));
  if (max_level >= 7) p7_ = register_module("p7", conv(c, c, 3, 2));
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* unit = m->as<ConvNormActImpl>()) c2_xavier_fill(unit->weight, unit->bias);
  }
}

std::vector<torch::Tensor> FpnImpl::forward(const std::vector<torch::Tensor>& features) {
  TORCH_CHECK(features.size() == lateral_.size(), "Fpn: expected ", lateral_.size(),
              " feature maps, got ", features.size());
  const size_t n = features.size();
  std::vector<torch::Tensor> out(n);
  // Top-down: nearest 2x upsample of the coarser merged map, added to the lateral.
  torch::Tensor top = lateral_[n - 1]->forward(features[n - 1]);
  out[n - 1] = output_[n - 1]->forward(top);
  for (size_t i = n - 1; i-- > 0;) {
    auto lateral = lateral_[i]->forward(features[i]);
    // Explicit size, not scale 2: an odd map (input not a multiple of 32) still lines up.
    auto up = torch::nn::functional::interpolate(
        top, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                 .mode(torch::kNearest));
    top = lateral + up;
    out[i] = output_[i]->forward(top);
  }
  if (p6_) {
    auto p6 = p6_->forward(features.back());
    out.push_back(p6);
    // Out of place: an in-place ReLU here breaks autograd (mmdet issue #7081).
    if (p7_) out.push_back(p7_->forward(torch::relu(p6)));
  }
  return out;
}

}  // namespace autoassign
