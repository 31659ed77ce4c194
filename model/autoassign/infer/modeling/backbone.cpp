// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/backbone.h"

namespace autoassign {
namespace {

ConvNormAct conv(int64_t in, int64_t out, int64_t k, int64_t stride, const std::string& norm,
                 bool relu, bool reparam = false) {
  return ConvNormAct(
      ConvNormActOptions(in, out, k).stride(stride).norm(norm).relu(relu).reparam(reparam));
}

// ResNet-18/34 block: two 3x3 convs.
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride, const std::string& norm) {
    conv1_ = register_module("conv1", conv(in, out, 3, stride, norm, /*relu=*/true));
    conv2_ = register_module("conv2", conv(out, out, 3, 1, norm, /*relu=*/false));
    if (in != out || stride != 1) {
      shortcut_ = register_module("shortcut", conv(in, out, 1, stride, norm, /*relu=*/false));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto identity = shortcut_ ? shortcut_->forward(x) : x;
    return (conv2_->forward(conv1_->forward(x)) + identity).relu_();
  }

 private:
  ConvNormAct conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

// ResNet-50 bottleneck. MSRA/caffe style (the paper's) puts the stride in the first 1x1
// (STRIDE_IN_1X1), torchvision's in the 3x3.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in, int64_t mid, int64_t out, int64_t stride, const std::string& norm,
                 bool stride_in_1x1) {
    conv1_ =
        register_module("conv1", conv(in, mid, 1, stride_in_1x1 ? stride : 1, norm, /*relu=*/true));
    conv2_ = register_module("conv2",
                             conv(mid, mid, 3, stride_in_1x1 ? 1 : stride, norm, /*relu=*/true));
    conv3_ = register_module("conv3", conv(mid, out, 1, 1, norm, /*relu=*/false));
    if (in != out || stride != 1) {
      shortcut_ = register_module("shortcut", conv(in, out, 1, stride, norm, /*relu=*/false));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto identity = shortcut_ ? shortcut_->forward(x) : x;
    return (conv3_->forward(conv2_->forward(conv1_->forward(x))) + identity).relu_();
  }

 private:
  ConvNormAct conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(Bottleneck);

}  // namespace

BackboneImpl::BackboneImpl(const BackboneConfig& config, int num_outputs)
    : config_(config), num_outputs_(num_outputs) {
  TORCH_CHECK(num_outputs >= 1 && num_outputs <= 3, "Backbone: num_outputs must be 1..3, got ",
              num_outputs);
  const std::string& norm = config.norm;
  // The FPN needs stages up to C(2 + num_outputs); later stages would be dead weight.
  const int num_stages = 1 + num_outputs;  // res2 (stride 4) is always built
  stem_ = torch::nn::Sequential();
  if (config.type == "fast") {
    const auto& ch = config.channels;
    const bool rep = config.reparam;
    stem_->push_back(conv(3, ch[0], 3, 2, norm, true, rep));
    for (int s = 0; s < num_stages; ++s) {
      torch::nn::Sequential stage;
      stage->push_back(conv(ch[s], ch[s + 1], 3, 2, norm, true, rep));
      for (int b = 0; b < config.blocks[s]; ++b) {
        stage->push_back(conv(ch[s + 1], ch[s + 1], 3, 1, norm, true, rep));
      }
      stages_.push_back(stage);
      if (s >= 1) out_channels_.push_back(ch[s + 1]);
    }
  } else {
    const bool bottleneck = config.type == "resnet50";
    std::vector<int> depth =
        config.type == "resnet18" ? std::vector<int>{2, 2, 2, 2} : std::vector<int>{3, 4, 6, 3};
    TORCH_CHECK(config.type == "resnet18" || config.type == "resnet34" || bottleneck,
                "Backbone: unknown type '", config.type, "'");
    stem_->push_back(conv(3, 64, 7, 2, norm, true));
    stem_->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
    int64_t in = 64;
    for (int s = 0; s < num_stages; ++s) {
      const int64_t width = 64 << s;
      const int64_t out = bottleneck ? width * 4 : width;
      torch::nn::Sequential stage;
      for (int b = 0; b < depth[s]; ++b) {
        const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        if (bottleneck) {
          stage->push_back(Bottleneck(in, width, out, stride, norm, config.stride_in_1x1));
        } else {
          stage->push_back(BasicBlock(in, out, stride, norm));
        }
        in = out;
      }
      stages_.push_back(stage);
      if (s >= 1) out_channels_.push_back(out);
    }
  }
  register_module("stem", stem_);
  for (size_t s = 0; s < stages_.size(); ++s) {
    register_module("res" + std::to_string(s + 2), stages_[s]);
  }
  // FREEZE_AT: 1 freezes the stem, 2 the stem and res2, and so on.
  if (config.freeze_at >= 1) {
    for (auto& p : stem_->parameters()) p.requires_grad_(false);
  }
  for (int s = 0; s + 2 <= config.freeze_at && s < static_cast<int>(stages_.size()); ++s) {
    for (auto& p : stages_[s]->parameters()) p.requires_grad_(false);
  }
}

void BackboneImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (!on) return;
  if (config_.freeze_at >= 1) stem_->eval();
  for (int s = 0; s + 2 <= config_.freeze_at && s < static_cast<int>(stages_.size()); ++s) {
    stages_[s]->eval();
  }
}

Features BackboneImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "Backbone: input must be [B, 3, H, W], got ",
              x.sizes());
  Features out;
  auto y = stem_->forward(x);
  for (size_t s = 0; s < stages_.size(); ++s) {
    y = stages_[s]->forward(y);
    if (s >= 1) out.push_back(y);
  }
  return out;
}

}  // namespace autoassign
