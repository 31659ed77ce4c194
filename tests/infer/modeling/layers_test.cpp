// SPDX-License-Identifier: MIT
// Re-parameterisable convolutions, the shared-tower head and the channels-last layout: each
// against hand-computed values or against the plain form it must equal.
#include "autoassign/infer/modeling/layers.h"

#include <cstdlib>
#include <fstream>

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include "autoassign/infer/detector.h"
#include "autoassign/infer/modeling/model.h"
#include "outputs.h"

namespace autoassign {
namespace {

using torch::indexing::Slice;

// Sets an inference-mode BatchNorm2d's four tensors.
void set_bn(torch::nn::Module& bn, std::vector<float> weight, std::vector<float> bias,
            std::vector<float> mean, std::vector<float> var) {
  torch::NoGradGuard g;
  auto params = bn.named_parameters(false);
  auto buffers = bn.named_buffers(false);
  params["weight"].copy_(torch::tensor(weight));
  params["bias"].copy_(torch::tensor(bias));
  buffers["running_mean"].copy_(torch::tensor(mean));
  buffers["running_var"].copy_(torch::tensor(var));
}

// A model whose BatchNorms hold non-trivial statistics and affine parameters, in eval mode.
AutoAssign model_with_norm_statistics(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  AutoAssign model(config);
  model->train();
  torch::NoGradGuard g;
  for (auto& p : model->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  for (int i = 0; i < 3; ++i) model->forward(torch::randn({2, 3, 96, 128}) * 2 + 0.5);
  model->eval();
  return model;
}

// One channel in and out, 3x3 input, stride 1: every branch can be worked out by hand.
TEST(Reparam, OneChannelHandComputed) {
  ConvNormAct unit(ConvNormActOptions(1, 1, 3).norm("bn").relu(false).reparam(true));
  unit->eval();
  auto named = unit->named_parameters(false);
  {
    torch::NoGradGuard g;
    named["weight"].copy_(torch::arange(1, 10, torch::kFloat).view({1, 1, 3, 3}));  // 1..9
    named["weight_1x1"].fill_(2.0f);
  }
  // eps 1e-5 makes the BN scale 1/sqrt(var + eps); the variances make it exactly 0.5, 0.25, 2.
  const double eps = 1e-5;
  for (auto& [name, w, b, m, v] : std::vector<std::tuple<std::string, float, float, float, float>>{
           {"norm", 1.0f, 0.5f, 1.0f, float(4 - eps)},
           {"norm_1x1", 1.0f, -1.0f, 0.0f, float(16 - eps)},
           {"norm_id", 2.0f, 0.0f, 3.0f, float(1 - eps)}}) {
    set_bn(*unit->named_children()[name], {w}, {b}, {m}, {v});
  }
  // Input all ones: the 3x3 sees the full kernel at the centre pixel (sum 45), the 1x1 sees 2,
  // the identity 1.
  auto x = torch::ones({1, 1, 3, 3});
  // centre: (45 - 1) * 0.5 + 0.5 = 22.5; 1x1: 2 * 0.25 - 1 = -0.5; id: (1 - 3) * 2 = -4.
  const float expected_centre = 22.5f - 0.5f - 4.0f;
  // top-left corner: the 3x3 sees taps 5, 6, 8, 9 (sum 28): (28 - 1) * 0.5 + 0.5 = 14.
  const float expected_corner = 14.0f - 0.5f - 4.0f;
  torch::NoGradGuard g;
  auto y = unit->forward(x);
  EXPECT_NEAR(y[0][0][1][1].item<float>(), expected_centre, 1e-4);
  EXPECT_NEAR(y[0][0][0][0].item<float>(), expected_corner, 1e-4);
  unit->fuse();
  ASSERT_TRUE(unit->fused());
  auto z = unit->forward(x);
  EXPECT_NEAR(z[0][0][1][1].item<float>(), expected_centre, 1e-4);
  EXPECT_NEAR(z[0][0][0][0].item<float>(), expected_corner, 1e-4);
  // The folded kernel: centre tap 5 * 0.5 + 2 * 0.25 + 1 * 2 = 5.0, a corner tap 1 * 0.5.
  EXPECT_NEAR(unit->weight[0][0][1][1].item<float>(), 5.0f, 1e-5);
  EXPECT_NEAR(unit->weight[0][0][0][0].item<float>(), 0.5f, 1e-5);
}

TEST(Reparam, IdentityBranchOnlyWhereShapesAllow) {
  auto names = [](const ConvNormActOptions& o) {
    ConvNormAct unit(o);
    std::set<std::string> out;
    for (const auto& c : unit->named_children()) out.insert(c.key());
    return out;
  };
  EXPECT_EQ(names(ConvNormActOptions(8, 8, 3).reparam(true)),
            (std::set<std::string>{"norm", "norm_1x1", "norm_id"}));
  EXPECT_EQ(names(ConvNormActOptions(8, 8, 3).stride(2).reparam(true)),
            (std::set<std::string>{"norm", "norm_1x1"}));
  EXPECT_EQ(names(ConvNormActOptions(4, 8, 3).reparam(true)),
            (std::set<std::string>{"norm", "norm_1x1"}));
  EXPECT_THROW(ConvNormAct(ConvNormActOptions(4, 8, 1).reparam(true)), c10::Error);
  EXPECT_THROW(ConvNormAct(ConvNormActOptions(4, 8, 3).norm("gn").reparam(true)), c10::Error);
}

// A whole network with a reparam head after folding equals its training form. (A reparam
// backbone is refused by the config: LibTorch 1.13 crashes on it.)
TEST(Reparam, FoldedNetworkEqualsTrainingForm) {
  auto config = ModelConfig::preset("face-rt");
  config.head.norm_per_level = false;  // reparam towers keep their BNs inside the unit
  config.head.reparam = true;
  auto with_backbone = config;
  with_backbone.backbone.reparam = true;
  EXPECT_THROW(with_backbone.validate(), std::invalid_argument);
  config.head.share_tower = true;
  auto model = model_with_norm_statistics(config, 3);
  auto x = torch::randn({1, 3, 96, 128});
  torch::NoGradGuard g;
  auto before = model->forward(x);
  model->prepare_for_inference();
  testing::expect_outputs_close(before, model->forward(x));
}

// A small head of the face-rt kind: 8 channels, BatchNorm, one tower for the three predictors.
HeadConfig small_shared_head(int num_convs) {
  HeadConfig hc;
  hc.channels = 8;
  hc.num_convs = num_convs;
  hc.norm = "bn";
  hc.share_tower = true;
  return hc;
}

TEST(Head, SharedTowerFeedsAllPredictors) {
  Head head(small_shared_head(2), 1, std::vector<int>{8, 16});
  std::set<std::string> children;
  for (const auto& c : head->named_children()) children.insert(c.key());
  EXPECT_TRUE(children.count("tower"));
  EXPECT_FALSE(children.count("cls_tower"));
  EXPECT_FALSE(children.count("reg_tower"));
  // Two towers of two 8->8 3x3 convs with bias and BN would be 4 x (576 + 8 + 16); one tower
  // is half that. Predictors: 8 -> 1, 4, 1 with bias; plus the 2 level scales.
  int64_t n = 0;
  for (const auto& p : head->parameters()) n += p.numel();
  const int64_t tower = 2 * (8 * 8 * 9 + 8 + 2 * 8);
  const int64_t preds = (8 * 9 + 1) * 1 + (8 * 9 + 1) * 4 + (8 * 9 + 1) * 1;
  EXPECT_EQ(n, tower + preds + 2);
  // The same features reach the classification and the objectness predictor: with equal
  // predictor weights the two logits are equal.
  {
    torch::NoGradGuard g;
    head->obj_pred->weight.copy_(head->cls_pred->weight);
    head->obj_pred->bias.copy_(head->cls_pred->bias);
  }
  head->eval();
  torch::NoGradGuard g;
  auto out = head->forward({torch::randn({1, 8, 6, 6}), torch::randn({1, 8, 3, 3})});
  for (size_t l = 0; l < 2; ++l) EXPECT_TRUE(torch::equal(out.cls_logits[l], out.obj_logits[l]));
}

// head.min_distance bounds the distances below, in strides: 0 is FCOS's ReLU, -0.5 lets a
// prediction reach half a stride past its point and no further.
TEST(Head, MinDistanceBoundsTheDistancesInStrides) {
  for (const double min_distance : {0.0, -0.5}) {
    HeadConfig hc = small_shared_head(1);
    hc.min_distance = min_distance;
    Head head(hc, 1, std::vector<int>{8, 16});
    torch::NoGradGuard g;
    // Zero weights: each distance channel is its bias times the level scale (1), times the
    // stride, after the bound.
    head->reg_pred->weight.zero_();
    head->reg_pred->bias.copy_(torch::tensor({-2.f, -0.25f, 0.f, 1.5f}));
    head->eval();
    auto out = head->forward({torch::randn({1, 8, 4, 4}), torch::randn({1, 8, 2, 2})});
    for (size_t l = 0; l < 2; ++l) {
      const float s = l == 0 ? 8.f : 16.f;
      const float lo = static_cast<float>(min_distance);
      const std::vector<float> want = {std::max(-2.f, lo) * s, std::max(-0.25f, lo) * s, 0.f,
                                       1.5f * s};
      for (int k = 0; k < 4; ++k) {
        EXPECT_TRUE((out.distances[l][0][k] == want[k]).all().item<bool>())
            << "level " << l << " channel " << k << " min_distance " << min_distance;
      }
    }
  }
  ModelConfig bad = ModelConfig::preset("face-rt");
  bad.head.min_distance = -1.5;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad.head.min_distance = 0.1;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

// How far a head's inference outputs (running statistics) are from its training outputs (the
// batch's statistics) once the running statistics have converged on a fixed pyramid whose
// levels differ in mean and scale, as FPN levels do: the largest difference over levels,
// relative to the spread of that level's training output.
double train_eval_gap(bool norm_per_level) {
  HeadConfig hc = small_shared_head(2);
  hc.norm_per_level = norm_per_level;
  torch::manual_seed(7);
  Head head(hc, 1, std::vector<int>{8, 16, 32});
  std::vector<torch::Tensor> pyramid = {torch::randn({2, 8, 32, 32}),
                                        torch::randn({2, 8, 16, 16}) * 8 + 20,
                                        torch::randn({2, 8, 8, 8}) * 0.5 - 5};
  torch::NoGradGuard g;
  head->train();
  HeadOutput trained;
  // Momentum 0.1: after 200 passes the running statistics hold the batch's to 0.9^200.
  for (int i = 0; i < 200; ++i) trained = head->forward(pyramid);
  head->eval();
  auto inferred = head->forward(pyramid);
  double gap = 0;
  for (size_t l = 0; l < pyramid.size(); ++l) {
    for (auto [a, b] : {std::pair{trained.cls_logits[l], inferred.cls_logits[l]},
                        std::pair{trained.obj_logits[l], inferred.obj_logits[l]}}) {
      const double spread = (a.max() - a.min()).item<double>();
      gap = std::max(gap, (a - b).abs().max().item<double>() / spread);
    }
  }
  return gap;
}

// With one BN per level, inference normalises each level as training did (up to the
// unbiased/biased variance, 1/128 at the smallest level); a BN shared by the levels learns
// running statistics that fit none of them, and inference drifts by a large part of the
// output's range. The second half shows the check can fail.
TEST(Head, PerLevelNormInfersAsItTrained) {
  EXPECT_LT(train_eval_gap(true), 0.02);
  EXPECT_GT(train_eval_gap(false), 0.2);
}

TEST(Head, PerLevelNormSharesTheConvsOnly) {
  HeadConfig hc;
  hc.channels = 8;
  hc.num_convs = 2;
  hc.norm = "bn";
  hc.norm_per_level = true;
  Head head(hc, 1, std::vector<int>{8, 16, 32});
  int64_t norms = 0, all = 0;
  for (const auto& p : head->named_parameters()) {
    all += p.value().numel();
    if (p.key().rfind("norm_levels", 0) == 0) norms += p.value().numel();
  }
  // Two towers (cls, reg) x 3 levels x 2 convs x (weight + bias of 8) norm parameters; the
  // convs themselves are counted once: 2 towers x 2 x (576 + 8).
  EXPECT_EQ(norms, 2 * 3 * 2 * 16);
  const int64_t preds = (8 * 9 + 1) * (1 + 4 + 1);
  EXPECT_EQ(all, norms + 2 * 2 * (576 + 8) + preds + 3);
  auto bad = ModelConfig::preset("face-rt");
  bad.head.norm_per_level = true;
  bad.head.norm = "gn";
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad.head.norm = "bn";
  bad.head.reparam = true;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

// NHWC is a memory layout only: the outputs equal NCHW's.
TEST(Layout, ChannelsLastEqualsNchw) {
  auto config = ModelConfig::preset("face-rt");
  torch::manual_seed(5);
  AutoAssign model(config);
  model->prepare_for_inference();
  auto x = torch::randn({1, 3, 96, 160});
  torch::NoGradGuard g;
  auto a = model->forward(x);
  model->set_channels_last(true);
  EXPECT_TRUE(model->backbone->parameters()[0].is_contiguous(torch::MemoryFormat::ChannelsLast));
  testing::expect_outputs_close(a, model->forward(x));
}

// The trainer's bf16 path: the network under CPU autocast. bf16 keeps 8 bits of mantissa
// (relative error 2^-9 per rounding, ~0.2%); through a dozen layers the outputs stay within 1%
// of their magnitude plus 5% of their spread across locations. The predictors and level scales
// run outside autocast, as at bf16 inference: the logits and distances come out in fp32 (an
// autocast conv would give bf16, whose ~0.4% steps on distances in pixels the loss would see),
// and autocast is on again after the head.
TEST(Layout, Bf16AutocastForwardCloseToFp32) {
  auto config = ModelConfig::preset("face-rt");
  torch::manual_seed(6);
  AutoAssign model(config);
  model->eval();
  auto x = torch::randn({1, 3, 96, 160});
  torch::NoGradGuard g;
  auto ref = model->forward(x);
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  auto low = model->forward(x);
  EXPECT_TRUE(at::autocast::is_cpu_enabled());
  auto tower_out = model->fpn->forward(model->backbone->forward(x));
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
  EXPECT_EQ(tower_out[0].scalar_type(), torch::kBFloat16);  // autocast did reach the network
  for (size_t l = 0; l < low.cls_logits.size(); ++l) {
    EXPECT_EQ(low.cls_logits[l].scalar_type(), torch::kFloat) << "level " << l;
    EXPECT_EQ(low.obj_logits[l].scalar_type(), torch::kFloat) << "level " << l;
    EXPECT_EQ(low.distances[l].scalar_type(), torch::kFloat) << "level " << l;
  }
  for (size_t l = 0; l < ref.cls_logits.size(); ++l) {
    auto spread = (ref.cls_logits[l].max() - ref.cls_logits[l].min()).item<float>();
    auto excess = ((low.cls_logits[l].to(torch::kFloat) - ref.cls_logits[l]).abs() -
                   0.01f * ref.cls_logits[l].abs())
                      .max()
                      .item<float>();
    EXPECT_LT(excess, 0.05f * spread + 1e-6f) << "level " << l;
    auto derr = ((low.distances[l].to(torch::kFloat) - ref.distances[l]).abs() /
                 (ref.distances[l].abs() + 1.0f))
                    .max()
                    .item<float>();
    EXPECT_LT(derr, 0.02f) << "level " << l;
  }
}

// Per-level BNs fold into one copy of the shared tower convs per level: the folded network
// equals its training form (here with a P6 level, fed from C5).
TEST(Head, PerLevelNormFoldsIntoEachLevelsConvs) {
  auto config = ModelConfig::preset("face-rt");
  config.head.share_tower = true;
  config.head.norm_per_level = true;
  config.fpn.levels = {3, 4, 5, 6};
  auto model = model_with_norm_statistics(config, 8);
  auto x = torch::randn({1, 3, 96, 128});
  torch::NoGradGuard g;
  auto before = model->forward(x);
  ASSERT_EQ(before.cls_logits.size(), 4u);
  model->prepare_for_inference();
  testing::expect_outputs_close(before, model->forward(x));
  model->set_channels_last(true);
  testing::expect_outputs_close(before, model->forward(x));
}

// bf16 inference: backbone, FPN and towers in bf16, predictors and outputs in fp32, within the
// tolerance of the autocast test above (1% of magnitude + 5% of spread for logits, 2% for
// distances in pixels).
TEST(Precision, Bf16InferenceCloseToFp32) {
  if (!cpu_features().avx512_core) GTEST_SKIP() << "no AVX-512: LibTorch has no bf16 convs here";
  auto config = ModelConfig::preset("face-rt");
  config.head.norm_per_level = true;
  auto model = model_with_norm_statistics(config, 9);
  model->prepare_for_inference();
  model->set_channels_last(true);
  auto x = torch::randn({1, 3, 96, 160});
  torch::NoGradGuard g;
  auto ref = model->forward(x);
  model->set_precision(torch::kBFloat16);
  EXPECT_EQ(model->backbone->parameters()[0].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(model->head->cls_pred->weight.scalar_type(), torch::kFloat);
  auto low = model->forward(x);
  for (size_t l = 0; l < ref.cls_logits.size(); ++l) {
    ASSERT_EQ(low.cls_logits[l].scalar_type(), torch::kFloat);
    ASSERT_EQ(low.distances[l].scalar_type(), torch::kFloat);
    for (auto [r, o] : {std::pair{ref.cls_logits[l], low.cls_logits[l]},
                        std::pair{ref.obj_logits[l], low.obj_logits[l]}}) {
      const auto spread = (r.max() - r.min()).item<float>();
      const auto excess = ((o - r).abs() - 0.01f * r.abs()).max().item<float>();
      EXPECT_LT(excess, 0.05f * spread + 1e-6f) << "level " << l;
    }
    const auto derr =
        ((low.distances[l] - ref.distances[l]).abs() / (ref.distances[l].abs() + 1.0f))
            .max()
            .item<float>();
    EXPECT_LT(derr, 0.02f) << "level " << l;
  }
  // Back to fp32: the weights went through bf16 once, so close but not equal.
  model->set_precision(torch::kFloat);
  EXPECT_EQ(model->forward(x).cls_logits[0].scalar_type(), torch::kFloat);
}

}  // namespace
}  // namespace autoassign
