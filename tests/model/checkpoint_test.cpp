// SPDX-License-Identifier: MIT
// The model file: bit-identical round trip, and a named error for every kind of bad file.
#include "autoassign/checkpoint.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "autoassign/types.h"
#include "fixtures.h"

namespace autoassign {
namespace {

using Kind = ModelFileError::Kind;

class ModelFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = testing::temp_dir();
    path = dir + "/model.pt";
    torch::manual_seed(5);
    model = AutoAssign(testing::tiny_config(3, 6));
    // Perturb every tensor so defaults cannot pass for loaded values.
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
    save_model(path, model);
  }

  // Expects load_model(file) to throw a ModelFileError of `kind` whose text names the file
  // and contains `reason`.
  void expect_error(const std::string& file, Kind kind, const std::string& reason) {
    try {
      load_model(file);
      FAIL() << "no error for " << file;
    } catch (const ModelFileError& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
  }

  std::string dir, path;
  AutoAssign model{nullptr};
};

TEST_F(ModelFile, RoundTripIsBitIdentical) {
  auto loaded = load_model(path);
  EXPECT_EQ(loaded->config().to_json(), model->config().to_json());
  model->eval();
  loaded->eval();
  auto x = torch::randn({2, 3, 96, 128});
  torch::NoGradGuard g;
  auto a = model->forward(x), b = loaded->forward(x);
  for (size_t l = 0; l < a.cls_logits.size(); ++l) {
    EXPECT_TRUE(torch::equal(a.cls_logits[l], b.cls_logits[l]));
    EXPECT_TRUE(torch::equal(a.obj_logits[l], b.obj_logits[l]));
    EXPECT_TRUE(torch::equal(a.distances[l], b.distances[l]));
  }
  EXPECT_TRUE(torch::equal(model->center_prior->sigma, loaded->center_prior->sigma));
  EXPECT_EQ(read_model_config(path).name, "tiny");
}

TEST_F(ModelFile, Missing) { expect_error(dir + "/nope.pt", Kind::kNotFound, "no such file"); }

TEST_F(ModelFile, Directory) { expect_error(dir, Kind::kUnreadable, "is a directory"); }

TEST_F(ModelFile, Unreadable) {
  std::filesystem::permissions(path, std::filesystem::perms::none);
  if (geteuid() != 0) {
    expect_error(path, Kind::kUnreadable, "cannot be opened");
    return;
  }
  // Root reads files whatever their mode: try as an unprivileged user in a child process, which
  // answers through its exit status (0: an kUnreadable error naming the file).
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    try {
      load_model(path);
      _exit(1);
    } catch (const ModelFileError& e) {
      const bool named = std::string(e.what()).find(path) != std::string::npos;
      _exit(e.kind() == Kind::kUnreadable && named ? 0 : 2);
    } catch (...) {
      _exit(4);
    }
  }
  int status = -1;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1: loaded anyway, 2: wrong kind or path not named, 3: could not drop root, 4: other";
}

TEST_F(ModelFile, Truncated) {
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  expect_error(path, Kind::kCorrupt, "not a model archive");
}

TEST_F(ModelFile, Foreign) {
  const std::string text = dir + "/notes.txt";
  std::ofstream(text) << "this is not a model\n";
  expect_error(text, Kind::kCorrupt, "not a model archive");
  // A LibTorch archive of something else.
  const std::string other = dir + "/other.pt";
  torch::serialize::OutputArchive archive;
  archive.write("weights", torch::ones({3}));
  archive.save_to(other);
  expect_error(other, Kind::kCorrupt, "not an autoassign model");
}

TEST_F(ModelFile, WrongVersion) {
  torch::serialize::OutputArchive archive, weights;
  archive.write("format", c10::IValue(std::string(kModelFormatTag)));
  archive.write("format_version", c10::IValue(kModelFormatVersion + 1));
  archive.write("config", c10::IValue(model->config().to_json()));
  model->save(weights);
  archive.write("model", weights);
  const std::string future = dir + "/future.pt";
  archive.save_to(future);
  expect_error(future, Kind::kVersion, "format version 2");
}

TEST_F(ModelFile, BadConfigAndMissingWeights) {
  {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kModelFormatTag)));
    archive.write("format_version", c10::IValue(kModelFormatVersion));
    archive.write("config", c10::IValue(std::string("{\"num_classes\": 0}")));
    archive.save_to(dir + "/badconfig.pt");
  }
  expect_error(dir + "/badconfig.pt", Kind::kCorrupt, "num_classes");
  {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kModelFormatTag)));
    archive.write("format_version", c10::IValue(kModelFormatVersion));
    archive.write("config", c10::IValue(model->config().to_json()));
    archive.save_to(dir + "/noweights.pt");
  }
  expect_error(dir + "/noweights.pt", Kind::kCorrupt, "weights");
  {
    // Weights of a different architecture under a valid header.
    torch::serialize::OutputArchive archive, weights;
    archive.write("format", c10::IValue(std::string(kModelFormatTag)));
    archive.write("format_version", c10::IValue(kModelFormatVersion));
    archive.write("config", c10::IValue(model->config().to_json()));
    AutoAssign other(testing::tiny_config(5, 6));
    other->save(weights);
    archive.write("model", weights);
    archive.save_to(dir + "/mismatch.pt");
  }
  expect_error(dir + "/mismatch.pt", Kind::kCorrupt, "shape");
}

TEST(Config, ErrorsNameTheKey) {
  auto expect_msg = [](const std::string& json, const std::string& part) {
    try {
      ModelConfig::from_json(json, "test.json");
      FAIL() << "accepted " << json;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
    }
  };
  expect_msg("{\"backbone\": {\"type\": \"vgg\"}}", "backbone.type 'vgg'");
  expect_msg("{\"fpn\": {\"levels\": [4, 5]}}", "fpn.levels");
  expect_msg("{\"bogus\": 1}", "unknown key 'bogus'");
  expect_msg("{\"num_classes\": \"two\"}", "'num_classes'");
  expect_msg("{\"num_classes\": 2, \"class_names\": [\"a\"]}", "class_names has 1");
  expect_msg("{not json", "not valid JSON");
  for (const auto& name : ModelConfig::preset_names()) {
    auto c = ModelConfig::preset(name);
    EXPECT_EQ(ModelConfig::from_json(c.to_json(), name).to_json(), c.to_json());
  }
  EXPECT_THROW(ModelConfig::preset("nope"), std::invalid_argument);
}

// Hostile configs: each was a crash (SIGFPE on a zero divisor) or an unbounded allocation
// before the bounds; now each is an error naming the field, raised before anything is built.
TEST(Config, HostileValuesAreRefusedBeforeAnythingIsBuilt) {
  const std::string face = ModelConfig::preset("face-rt").to_json();
  auto with = [&](const std::string& path, const nlohmann::json& value) {
    auto j = nlohmann::json::parse(face);
    j[nlohmann::json::json_pointer(path)] = value;
    return j.dump();
  };
  auto expect_msg = [](const std::string& json, const std::string& part) {
    try {
      ModelConfig::from_json(json, "hostile.json");
      FAIL() << "accepted " << json.substr(0, 200);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg(with("/input/size_divisor", 0), "input.size_divisor must be in [1, 1024], got 0");
  expect_msg(with("/input/size_divisor", -32), "input.size_divisor");
  expect_msg(with("/num_classes", 2000000000), "num_classes must be in [1, 10000]");
  expect_msg(with("/backbone/channels", {16, 32, 48, 1000000, 160}), "backbone.channels");
  expect_msg(with("/backbone/blocks", {1, 2, 2, 100000}), "backbone.blocks");
  expect_msg(with("/head/num_convs", 1000), "head.num_convs");
  expect_msg(with("/input/width", 1 << 30), "input.width");
  expect_msg(with("/input/std", {1.0, 0.0, 1.0}), "input.std");
  expect_msg(with("/postprocess/topk_per_level", 2000000000), "postprocess.topk_per_level");
  expect_msg(with("/postprocess/max_detections", 0), "postprocess.max_detections");
  expect_msg(with("/class_names/0", std::string(300, 'x')), "class_names[0]");
  // Every field within its bound, but together far too large a network.
  auto big = nlohmann::json::parse(with("/backbone/channels", {4096, 4096, 4096, 4096, 4096}));
  big["backbone"]["blocks"] = {64, 64, 64, 64};
  expect_msg(big.dump(), "M parameters");
  // The estimate is close to the real count (weights of convolutions: the bulk of it).
  for (const auto& name : ModelConfig::preset_names()) {
    auto c = ModelConfig::preset(name);
    AutoAssign model(c);
    double real = 0;
    for (const auto& p : model->parameters()) real += static_cast<double>(p.numel());
    EXPECT_NEAR(c.parameter_estimate() / real, 1.0, 0.05) << name;
  }
}

}  // namespace
}  // namespace autoassign
