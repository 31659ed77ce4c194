// SPDX-License-Identifier: MIT
// The PyTorch checkpoint reader (torch_checkpoint.h) against files written by PyTorch itself:
// tests/import/make_checkpoints.py saves them with Debian's python3-torch and writes beside each
// the tensors' dtypes, shapes and values, which the reader must reproduce exactly. Then what it
// must refuse, by name: the pre-1.6 format, a pickle that calls code, broken zips and pickles.
#include "autoassign/core/torch_checkpoint.h"

#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "autoassign/infer/checkpoint.h"
#include "fixtures.h"

namespace autoassign {
namespace {

class TorchCheckpointFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::temp_dir();
    const std::string error = testing::run_torch_script("AUTOASSIGN_MAKE_CHECKPOINTS", dir_);
    ASSERT_TRUE(error.empty()) << error;
  }
  static std::string path(const std::string& name) { return dir_ + "/" + name; }
  static inline std::string dir_;
};

void expect_same_tensors(const TorchCheckpoint& ck, const nlohmann::json& expected) {
  const auto state = ck.state_dict();
  ASSERT_EQ(state.size(), expected["tensors"].size());
  size_t i = 0;
  for (const auto& [name, want] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    // nlohmann's map sorts keys; the state dict keeps the file's order: look the name up.
    const TorchTensorRef* ref = nullptr;
    for (const auto& [k, r] : state) {
      if (k == name) ref = &r;
    }
    ASSERT_NE(ref, nullptr);
    EXPECT_EQ(torch_dtype_name(ref->dtype), want["dtype"].get<std::string>());
    EXPECT_EQ(ref->shape, want["shape"].get<std::vector<int64_t>>());
    const torch::Tensor t = torch_tensor(ck, *ref);
    EXPECT_EQ(t.sizes().vec(), want["shape"].get<std::vector<int64_t>>());
    const auto values = want["values"].get<std::vector<double>>();
    const torch::Tensor flat = t.to(torch::kDouble).flatten().contiguous();
    ASSERT_EQ(flat.numel(), static_cast<int64_t>(values.size()));
    for (size_t k = 0; k < values.size(); ++k) {
      // Exact: the same bytes, widened the same way (float32 -> double on both sides).
      EXPECT_EQ(flat[static_cast<int64_t>(k)].item<double>(), values[k]) << "element " << k;
    }
    ++i;
  }
  EXPECT_EQ(i, state.size());
}

TEST_F(TorchCheckpointFiles, MmdetLayoutTensorsViewsAndMeta) {
  const auto ck = TorchCheckpoint::load(path("mmdet.pth"));
  const auto expected = nlohmann::json::parse(testing::read_file_bytes(path("mmdet.json")));
  expect_same_tensors(ck, expected);
  // File order is kept (the first key written is the conv weight).
  EXPECT_EQ(ck.state_dict().front().first, "0.weight");
  const PickleValue* meta = ck.root().get("meta");
  ASSERT_NE(meta, nullptr);
  ASSERT_EQ(meta->kind, PickleValue::Kind::kDict);
  const PickleValue* classes = meta->get("CLASSES");
  ASSERT_NE(classes, nullptr);
  ASSERT_EQ(classes->kind, PickleValue::Kind::kTuple);
  ASSERT_EQ(classes->items.size(), 2u);
  EXPECT_EQ(classes->items[1]->text, "car");
  EXPECT_EQ(meta->get("epoch")->integer, 12);
  EXPECT_EQ(meta->get("big")->integer, int64_t{1} << 40);
  EXPECT_EQ(meta->get("neg")->integer, -7);
  EXPECT_DOUBLE_EQ(meta->get("lr")->real, 0.01);
  EXPECT_EQ(meta->get("note")->text, "caf\xc3\xa9");
  EXPECT_EQ(meta->get("none")->kind, PickleValue::Kind::kNone);
  EXPECT_TRUE(meta->get("ok")->boolean);
  // The views: a transposed tensor and a slice at an offset of the same storage.
  for (const auto& [name, ref] : ck.state_dict()) {
    if (name == "view.transposed") {
      EXPECT_EQ(ref.stride, (std::vector<int64_t>{1, 6}));
    }
    if (name == "view.slice") {
      EXPECT_EQ(ref.offset, 8);
    }
  }
}

TEST_F(TorchCheckpointFiles, CvpodsAndTorchvisionLayouts) {
  for (const char* name : {"cvpods", "torchvision"}) {
    SCOPED_TRACE(name);
    const auto ck = TorchCheckpoint::load(path(std::string(name) + ".pth"));
    expect_same_tensors(
        ck, nlohmann::json::parse(testing::read_file_bytes(path(std::string(name) + ".json"))));
  }
  EXPECT_EQ(TorchCheckpoint::load(path("cvpods.pth")).root().get("iteration")->integer, 90000);
}

void expect_refused(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    FAIL() << "accepted; expected an error with: " << part;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST_F(TorchCheckpointFiles, RefusesThePre16FormatAndCode) {
  expect_refused([] { TorchCheckpoint::load(path("legacy.pth")); }, "before PyTorch 1.6");
  expect_refused([] { TorchCheckpoint::load(path("legacy.pth")); }, "torch.save(torch.load(");
  // The pickle names os.getcwd (posix.getcwd): refused by name, nothing called.
  expect_refused([] { TorchCheckpoint::load(path("code.pth")); }, "getcwd', which is not data");
  expect_refused([] { TorchCheckpoint::load(path("no-such-file.pth")); }, "cannot open");
  expect_refused([] { TorchCheckpoint::parse("hello world", "x.pth"); }, "not a PyTorch");
}

// Every truncation and every single-byte change of a real checkpoint: an error or a parse,
// never a crash (the fuzz target goes further; this runs in every CI build).
TEST_F(TorchCheckpointFiles, DamagedFilesAreErrorsNotCrashes) {
  const std::string good = testing::read_file_bytes(path("torchvision.pth"));
  int refused = 0, parsed = 0;
  auto attempt = [&](std::string bytes) {
    try {
      const auto ck = TorchCheckpoint::parse(std::move(bytes), "damaged.pth");
      for (const auto& [name, ref] : ck.state_dict()) (void)torch_tensor(ck, ref);
      ++parsed;
    } catch (const std::invalid_argument&) {
      ++refused;
    }
  };
  for (size_t n = 0; n < good.size(); n += 7) attempt(good.substr(0, n));
  for (size_t i = 0; i < good.size(); ++i) {
    std::string b = good;
    b[i] = static_cast<char>(b[i] ^ 0xff);
    attempt(b);
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(parsed, 10);  // flips inside tensor data or padding change nothing structural
}

}  // namespace
}  // namespace autoassign
