// SPDX-License-Identifier: MIT
// The model file: bit-identical round trip, and a named error for every kind of bad file.
#include "autoassign/infer/checkpoint.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "autoassign/core/types.h"
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

// What `autoassign tune` does: new post-processing defaults, the weights untouched.
TEST_F(ModelFile, NewPostprocessDefaultsTravelWithTheFile) {
  auto loaded = load_model(path);
  EXPECT_EQ(loaded->config().postprocess.vote_iou, 0.0f);  // off unless set
  PostprocessConfig p = loaded->config().postprocess;
  p.vote_iou = 0.7f;
  p.nms_iou = 0.45f;
  loaded->set_postprocess(p);
  const std::string tuned = dir + "/tuned.pt";
  save_model(tuned, loaded);
  auto back = load_model(tuned);
  EXPECT_EQ(back->config().postprocess.vote_iou, 0.7f);
  EXPECT_EQ(back->config().postprocess.nms_iou, 0.45f);
  const auto tuned_params = back->named_parameters();
  for (const auto& p0 : model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p0.value(), tuned_params[p0.key()])) << p0.key();
  }
  // A bad value is refused with its field named, and nothing changes.
  p.vote_iou = 1.5f;
  try {
    back->set_postprocess(p);
    FAIL() << "vote_iou 1.5 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("postprocess.vote_iou"), std::string::npos) << e.what();
  }
  EXPECT_EQ(back->config().postprocess.vote_iou, 0.7f);
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
  expect_error(path, Kind::kCorrupt, "not a valid tensor file");
  std::filesystem::resize_file(path, 5);
  expect_error(path, Kind::kCorrupt, "8-byte header");
}

// The file is the safetensors layout, read here by hand: an 8-byte little-endian length, a
// JSON header, raw little-endian tensors at the offsets it names.
TEST_F(ModelFile, IsSafetensorsLayout) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n * 256 + len[i];
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], kModelFormatTag);
  EXPECT_EQ(j["__metadata__"]["format_version"], "2");
  EXPECT_EQ((8 + n) % 8, 0u);  // data 8-byte aligned
  const auto& e = j["head.cls_pred.weight"];
  EXPECT_EQ(e["dtype"], "F32");
  const auto w = model->head->cls_pred->weight.contiguous();
  EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), w.sizes().vec());
  const uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
  ASSERT_EQ(end - begin, w.nbytes());
  std::vector<float> raw(w.numel());
  in.seekg(static_cast<std::streamoff>(8 + n + begin));
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(w.nbytes()));
  EXPECT_TRUE(torch::equal(torch::from_blob(raw.data(), w.sizes()), w));
}

TEST_F(ModelFile, Foreign) {
  const std::string text = dir + "/notes.txt";
  std::ofstream(text) << "this is not a model\n";
  expect_error(text, Kind::kCorrupt, "not a valid tensor file");
  // A tensor file of something else.
  const std::string other = dir + "/other.safetensors";
  write_tensor_file(other, {}, {{"weights", torch::ones({3})}});
  expect_error(other, Kind::kCorrupt, "not an autoassign model");
}

// The version-1 format, a LibTorch archive, written as the old save_model did.
void write_v1(const std::string& file, AutoAssign& m, int64_t version = 1) {
  torch::serialize::OutputArchive archive, weights;
  archive.write("format", c10::IValue(std::string(kModelFormatTag)));
  archive.write("format_version", c10::IValue(version));
  archive.write("config", c10::IValue(m->config().to_json()));
  m->save(weights);
  archive.write("model", weights);
  archive.save_to(file);
}

// A LibTorch archive (a zip, whose loading compiles and runs TorchScript) is never opened by
// the loader: it is refused from its first bytes, with the way to convert it. Only
// load_legacy_model (autoassign convert) reads it, and the conversion is exact.
TEST_F(ModelFile, LibTorchArchivesAreRefusedUnlessConverted) {
  const std::string v1 = dir + "/v1.pt";
  write_v1(v1, model);
  expect_error(v1, Kind::kVersion, "autoassign convert");
  EXPECT_THROW(read_model_config(v1), ModelFileError);
  const std::string zip = dir + "/any.zip";
  std::ofstream(zip, std::ios::binary) << std::string("PK\x03\x04", 4) << std::string(60, 'x');
  expect_error(zip, Kind::kVersion, "LibTorch archive");
  auto legacy = load_legacy_model(v1);
  const std::string v2 = dir + "/v2.pt";
  save_model(v2, legacy);
  auto converted = load_model(v2);
  const auto params = converted->named_parameters();
  const auto buffers = converted->named_buffers();
  for (const auto& [name, t] : module_tensors(*model)) {
    const torch::Tensor* back = params.find(name);
    if (!back) back = buffers.find(name);
    ASSERT_NE(back, nullptr) << name;
    EXPECT_TRUE(torch::equal(t, *back)) << name;
  }
  write_v1(dir + "/v7.pt", model, 7);
  EXPECT_THROW(load_legacy_model(dir + "/v7.pt"), ModelFileError);
}

// The model's tensors with one changed, for files that differ from a good one in one way.
std::vector<std::pair<std::string, torch::Tensor>> tensors_of(
    AutoAssign& m,
    const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& change =
        nullptr) {
  auto t = module_tensors(*m);
  if (change) change(t);
  return t;
}

TEST_F(ModelFile, WrongVersionAndBadMetadata) {
  auto meta = [&](std::string version, std::string config) {
    return std::map<std::string, std::string>{
        {"format", kModelFormatTag}, {"format_version", version}, {"config", config}};
  };
  const std::string good_config = model->config().to_json();
  write_tensor_file(dir + "/future.pt", meta("3", good_config), tensors_of(model));
  expect_error(dir + "/future.pt", Kind::kVersion, "format version '3'");
  write_tensor_file(dir + "/badconfig.pt", meta("2", "{\"num_classes\": 0}"), tensors_of(model));
  expect_error(dir + "/badconfig.pt", Kind::kCorrupt, "num_classes");
  auto j = nlohmann::json::parse(good_config);
  j["input"]["size_divisor"] = 0;
  write_tensor_file(dir + "/divisor.pt", meta("2", j.dump()), tensors_of(model));
  expect_error(dir + "/divisor.pt", Kind::kCorrupt, "input.size_divisor");
  write_tensor_file(dir + "/noconfig.pt", {{"format", kModelFormatTag}, {"format_version", "2"}},
                    tensors_of(model));
  expect_error(dir + "/noconfig.pt", Kind::kCorrupt, "metadata 'config' missing");
  // Found by the hostile probe (issue 26): a config 100,000 levels deep crashed every loader
  // (SIGSEGV in nlohmann's recursive dump), and num_classes 2000000000 without class_names
  // built two billion default names (16.9 GB) before the range check.
  std::string deep = good_config;
  deep.replace(deep.find("\"name\""), 0,
               "\"description\": " + std::string(100000, '[') + std::string(100000, ']') + ", ");
  write_tensor_file(dir + "/deep.pt", meta("2", deep), tensors_of(model));
  expect_error(dir + "/deep.pt", Kind::kCorrupt, "nests deeper than 8 levels");
  j = nlohmann::json::parse(good_config);
  j["num_classes"] = 2000000000;
  j.erase("class_names");
  write_tensor_file(dir + "/classes.pt", meta("2", j.dump()), tensors_of(model));
  const auto t0 = std::chrono::steady_clock::now();
  expect_error(dir + "/classes.pt", Kind::kCorrupt, "num_classes must be in [1, 10000]");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

// Paths that are not regular files: a FIFO blocked open() forever (info, the element's start,
// a reload), /dev/zero was read as a file "shorter than the 8-byte header" (issue 26).
TEST_F(ModelFile, FifoAndDevicesAreRefusedWithoutBlocking) {
  const std::string fifo = dir + "/model.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_error(fifo, Kind::kUnreadable, "is a FIFO (named pipe), not a regular file");
  expect_error("/dev/zero", Kind::kUnreadable, "is a character device, not a regular file");
  const std::string loop = dir + "/loop.pt";
  std::filesystem::create_symlink(loop, loop);
  expect_error(loop, Kind::kUnreadable, "symbolic links");
}

TEST_F(ModelFile, EveryTensorMustBeTheOneTheConfigImplies) {
  const std::map<std::string, std::string> meta = {
      {"format", kModelFormatTag}, {"format_version", "2"}, {"config", model->config().to_json()}};
  write_tensor_file(dir + "/missing.pt", meta,
                    tensors_of(model, [](auto& t) { t.erase(t.begin() + 1); }));
  expect_error(dir + "/missing.pt", Kind::kCorrupt, "is missing");
  write_tensor_file(dir + "/extra.pt", meta, tensors_of(model, [](auto& t) {
                      t.emplace_back("payload", torch::zeros({4}));
                    }));
  expect_error(dir + "/extra.pt", Kind::kCorrupt, "tensor 'payload' is not part of the model");
  write_tensor_file(dir + "/dtype.pt", meta,
                    tensors_of(model, [](auto& t) { t[0].second = t[0].second.to(torch::kLong); }));
  expect_error(dir + "/dtype.pt", Kind::kCorrupt, "the config needs F32");
  AutoAssign other(testing::tiny_config(5, 6));
  write_tensor_file(dir + "/mismatch.pt", meta, tensors_of(other));
  expect_error(dir + "/mismatch.pt", Kind::kCorrupt, "the config needs");
}

// The header parser against hand-made files: each defect named, nothing read out of bounds.
}  // namespace
}  // namespace autoassign
