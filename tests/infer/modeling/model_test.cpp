// SPDX-License-Identifier: MIT
// The presets' networks: level shapes and strides, the fast backbone, BN folding.
#include "autoassign/infer/modeling/model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "autoassign/infer/preprocess.h"
#include "fixtures.h"
#include "outputs.h"

namespace autoassign {
namespace {

TEST(Presets, LevelShapesAndStridesAtOddInput) {
  for (const auto& name : ModelConfig::preset_names()) {
    SCOPED_TRACE(name);
    auto config = ModelConfig::preset(name);
    if (config.input.resize == "short_long") {
      config.input.short_side = 200;  // keep the big presets cheap on 2 cores
      config.input.long_side = 333;
    }
    torch::manual_seed(0);
    AutoAssign model(config);
    model->eval();
    Preprocessor pre(config.input);
    cv::Mat frame = testing::square_picture(333, 217, cv::Rect(10, 10, 50, 50));
    ImageGeometry geo;
    auto input = pre(
        ImageView::packed(PixelFormat::kBGR, frame.data, 333, 217, static_cast<int>(frame.step)),
        &geo);
    const int64_t h = input.size(1), w = input.size(2);
    EXPECT_EQ(h % 32, 0);
    EXPECT_EQ(w % 32, 0);
    torch::NoGradGuard no_grad;
    auto out = model->forward(input.unsqueeze(0));
    ASSERT_EQ(out.cls_logits.size(), config.fpn.levels.size());
    int64_t eh = h, ew = w;
    for (size_t l = 0; l < config.fpn.levels.size(); ++l) {
      const int level = config.fpn.levels[l];
      // P3..P5 are H/s; P6, P7 are ceil(prev / 2) from the 3x3/s2/p1 convs.
      if (level <= 5) {
        eh = h >> level;
        ew = w >> level;
      } else {
        eh = (eh + 1) / 2;
        ew = (ew + 1) / 2;
      }
      EXPECT_EQ(model->strides()[l], 1 << level);
      EXPECT_EQ(out.cls_logits[l].sizes(), (std::vector<int64_t>{1, config.num_classes, eh, ew}));
      EXPECT_EQ(out.obj_logits[l].sizes(), (std::vector<int64_t>{1, 1, eh, ew}));
      EXPECT_EQ(out.distances[l].sizes(), (std::vector<int64_t>{1, 4, eh, ew}));
      EXPECT_TRUE((out.distances[l] >= 0).all().item<bool>());
    }
  }
}

TEST(Presets, FastBackboneWithP6P7AndResnetFreezing) {
  auto config = ModelConfig::preset("r50-fpn");
  AutoAssign model(config);
  // FREEZE_AT = 2: the stem and res2 do not train; res3 does.
  for (const auto& p : model->backbone->named_parameters()) {
    const bool frozen = p.key().rfind("stem", 0) == 0 || p.key().rfind("res2", 0) == 0;
    if (frozen) {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
  }
  // Frozen BN has no trainable parameter at all.
  int64_t trainable_norm = 0;
  for (const auto& p : model->backbone->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) ++trainable_norm;
  }
  EXPECT_EQ(trainable_norm, 0);
  // R-50 widths: C3..C5 = 512, 1024, 2048.
  EXPECT_EQ(model->backbone->out_channels(), (std::vector<int64_t>{512, 1024, 2048}));
}

TEST(Presets, FusedModelMatchesUnfused) {
  auto config = ModelConfig::preset("face-rt");
  torch::manual_seed(1);
  AutoAssign model(config);
  // Give the BNs non-trivial statistics first.
  model->train();
  {
    torch::NoGradGuard g;
    for (int i = 0; i < 3; ++i) model->forward(torch::randn({2, 3, 128, 160}) * 2 + 0.5);
  }
  model->eval();
  auto x = torch::randn({1, 3, 128, 160});
  torch::NoGradGuard g;
  auto before = model->forward(x);
  model->prepare_for_inference();
  testing::expect_outputs_close(before, model->forward(x));
}

}  // namespace
}  // namespace autoassign
