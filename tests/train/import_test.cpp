// SPDX-License-Identifier: MIT
// `autoassign import` on checkpoints with the published layouts (tests/import/
// make_published_layouts.py writes random ones with every key name and shape of MMDetection's
// and cvpods' AutoAssign R-50 FPN and torchvision's ResNet-50, and spot checks written from
// those layouts by hand): each key lands in the parameter the layout says, nothing is lost
// (the sum of every tensor), and every mismatch is an error naming the key.
#include "autoassign/import.h"

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "autoassign/checkpoint.h"
#include "fixtures.h"

namespace autoassign {
namespace {

class Import : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::temp_dir();
    const std::string error = testing::run_torch_script("AUTOASSIGN_MAKE_LAYOUTS", dir_);
    ASSERT_TRUE(error.empty()) << error;
  }
  static std::string path(const std::string& name) { return dir_ + "/" + name; }
  static nlohmann::json expected(const std::string& name) {
    return nlohmann::json::parse(testing::read_file_bytes(path(name + ".json")));
  }
  static inline std::string dir_;
};

std::map<std::string, torch::Tensor> tensors_of(AutoAssign& model) {
  std::map<std::string, torch::Tensor> all;
  for (const auto& p : model->named_parameters()) all[p.key()] = p.value();
  for (const auto& b : model->named_buffers()) all[b.key()] = b.value();
  return all;
}

void expect_filled_as_the_layout_says(AutoAssign& model, const nlohmann::json& want) {
  auto all = tensors_of(model);
  for (const auto& c : want["checks"]) {
    SCOPED_TRACE(c["library"].get<std::string>() + " <- " + c["source"].get<std::string>());
    ASSERT_TRUE(all.count(c["library"]));
    const torch::Tensor t = all[c["library"]].to(torch::kDouble);
    EXPECT_NEAR(t.sum().item<double>(), c["sum"].get<double>(),
                1e-9 * std::max(1.0, std::abs(c["sum"].get<double>())) + 1e-9);
    EXPECT_EQ(static_cast<float>(t.flatten()[0].item<double>()), c["first"].get<float>());
  }
  double total = 0;
  for (const auto& [name, t] : all) {
    if (name.find("num_batches_tracked") == std::string::npos) {
      total += t.to(torch::kDouble).sum().item<double>();
    }
  }
  EXPECT_NEAR(total, want["total"].get<double>(), 1e-6 * std::abs(want["total"].get<double>()));
}

TEST_F(Import, MmdetLayout) {
  ImportOptions o;
  o.from = ImportSource::kMmdet;
  ImportReport report;
  auto model = import_checkpoint(path("mmdet.pth"), o, &report);
  EXPECT_EQ(report.keys, 379u);
  EXPECT_EQ(report.dropped.size(), 53u);  // the BatchNorm batch counters
  EXPECT_TRUE(report.left_initialised.empty());
  expect_filled_as_the_layout_says(model, expected("mmdet"));
  // The five 0-d scales, in level order, into one vector.
  const auto scales = tensors_of(model)["head.scales"];
  for (int l = 0; l < 5; ++l) EXPECT_FLOAT_EQ(scales[l].item<float>(), 1.0f + 0.1f * l);
  // MMDetection's pixel mean, BGR, 0..255.
  EXPECT_EQ(report.config.input.channel_order, "BGR");
  EXPECT_FLOAT_EQ(report.config.input.mean[0], 102.9801f);
  EXPECT_FLOAT_EQ(report.config.input.mean[2], 122.7717f);
  EXPECT_EQ(report.config.num_classes, 80);
  EXPECT_EQ(report.config.class_names.front(), "person");  // COCO's, from the preset
}

TEST_F(Import, CvpodsLayout) {
  ImportOptions o;
  o.from = ImportSource::kCvpods;
  ImportReport report;
  auto model = import_checkpoint(path("cvpods.pth"), o, &report);
  EXPECT_EQ(report.keys, 326u);
  EXPECT_TRUE(report.dropped.empty());
  expect_filled_as_the_layout_says(model, expected("cvpods"));
  EXPECT_FLOAT_EQ(report.config.input.mean[0], 103.53f);
}

TEST_F(Import, TorchvisionBackboneNeedsAllowMissing) {
  ImportOptions o;
  o.from = ImportSource::kTorchvision;
  ImportReport report;
  try {
    import_checkpoint(path("torchvision.pth"), o, &report);
    FAIL() << "a backbone-only import went through without --allow-missing";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--allow-missing"), std::string::npos) << e.what();
  }
  o.allow_missing = true;
  auto model = import_checkpoint(path("torchvision.pth"), o, &report);
  EXPECT_EQ(report.dropped.size(), 53u + 2u);  // counters and the classifier
  // FPN, head and prior keep their initialisation: 16 + 39 + 2 tensors.
  EXPECT_EQ(report.left_initialised.size(), 57u);
  EXPECT_EQ(report.config.input.channel_order, "RGB");
  EXPECT_FALSE(report.notes.empty());  // the stride difference is said
  expect_filled_as_the_layout_says(model, [&] {
    auto want = expected("torchvision");
    // The total covers the backbone only: add what the model initialised itself.
    double init = 0;
    auto all = tensors_of(model);
    for (const auto& name : report.left_initialised) {
      init += all[name].to(torch::kDouble).sum().item<double>();
    }
    want["total"] = want["total"].get<double>() + init;
    return want;
  }());
}

TEST_F(Import, MismatchesAreErrorsNamingTheKey) {
  auto refused = [&](const std::string& file, ImportSource from, const std::string& part) {
    ImportOptions o;
    o.from = from;
    ImportReport report;
    try {
      import_checkpoint(path(file), o, &report);
      FAIL() << file << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused("p6_from_p5.pth", ImportSource::kMmdet, "a P6 built from P5");
  refused("p6_from_p5.pth", ImportSource::kMmdet, "'neck.fpn_convs.3.conv.weight'");
  refused("torchvision.pth", ImportSource::kMmdet, "unknown key 'conv1.weight'");
  refused("mmdet.pth", ImportSource::kCvpods, "unknown key 'backbone.conv1.weight'");
  // A config that does not match: r18-fpn has other shapes.
  ImportOptions o;
  o.from = ImportSource::kMmdet;
  o.config = ModelConfig::preset("r18-fpn");
  ImportReport report;
  EXPECT_THROW(import_checkpoint(path("mmdet.pth"), o, &report), std::invalid_argument);
}

// The command a user runs: the file it writes is a model every loader accepts.
TEST_F(Import, CommandWritesALoadableModel) {
  const char* cli = std::getenv("AUTOASSIGN_CLI");
  ASSERT_NE(cli, nullptr);
  const std::string out = path("imported.pt"), log = path("import.txt");
  const std::string cmd = std::string(cli) + " import --from mmdet " + path("mmdet.pth") + " -o " +
                          out + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string text = testing::read_file_bytes(log);
  EXPECT_NE(text.find("imported 379 keys"), std::string::npos) << text;
  auto model = load_model(out);
  EXPECT_EQ(model->config().name, "r50-fpn-mmdet");
  const std::string bad = std::string(cli) + " import --from caffe " + path("mmdet.pth") + " -o " +
                          out + " > " + log + " 2>&1";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace autoassign
