// SPDX-License-Identifier: MIT
// Weight averaging of model files (`autoassign average`): the mean against hand-computed
// values, the first file's integer buffers and post-processing, and a named refusal for every
// kind of bad input.
#include "autoassign/train/average.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "autoassign/core/types.h"
#include "autoassign/infer/checkpoint.h"
#include "fixtures.h"

namespace autoassign {
namespace {

class Average : public ::testing::Test {
 protected:
  void SetUp() override { dir = testing::temp_dir(); }

  // A face-rt network (BatchNorm, so it has integer batch counters) whose floating-point
  // tensors all hold `value` and whose counters hold `count`, written to `name`.
  std::string constant_model(const std::string& name, float value, int64_t count,
                             float vote_iou = 0.0f) {
    AutoAssign m(ModelConfig::preset("face-rt"));
    torch::NoGradGuard g;
    for (auto& p : m->parameters()) p.fill_(value);
    for (auto& b : m->buffers()) b.fill_(b.is_floating_point() ? value : count);
    PostprocessConfig p = m->config().postprocess;
    p.vote_iou = vote_iou;
    m->set_postprocess(p);
    const std::string path = dir + "/" + name;
    save_model(path, m);
    return path;
  }

  std::string random_model(const std::string& name, uint64_t seed, ModelConfig config) {
    torch::manual_seed(seed);
    AutoAssign m(config);
    torch::NoGradGuard g;
    for (auto& p : m->parameters()) p.add_(torch::randn_like(p) * 0.1);
    const std::string path = dir + "/" + name;
    save_model(path, m);
    return path;
  }

  // Expects average_models to refuse with std::invalid_argument whose text holds `what`.
  void expect_refusal(const std::vector<std::string>& paths, const std::vector<double>& weights,
                      const std::string& what) {
    try {
      average_models(paths, weights);
      FAIL() << "no error; expected one saying: " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }

  std::string dir;
};

TEST_F(Average, WeightedMeanOfConstantModelsByHand) {
  const auto a = constant_model("a.pt", 1.0f, 7, 0.7f);
  const auto b = constant_model("b.pt", 5.0f, 100);
  const auto c = constant_model("c.pt", -3.0f, 9);
  // (3 x 1 + 1 x 5) / 4 = 2; (1 + 5 - 3) / 3 = 1; (1 x 1 + 2 x 5 + 1 x -3) / 4 = 2.
  const std::vector<std::pair<std::vector<std::string>, std::vector<double>>> cases = {
      {{a, b}, {3, 1}}, {{a, b, c}, {}}, {{a, b, c}, {0.5, 1, 0.5}}};
  const float expected[] = {2.0f, 1.0f, 2.0f};
  for (size_t i = 0; i < cases.size(); ++i) {
    auto m = average_models(cases[i].first, cases[i].second);
    size_t floats = 0, counters = 0;
    for (const auto& p : m->named_parameters()) {
      EXPECT_TRUE(torch::all(p.value() == expected[i]).item<bool>()) << i << " " << p.key();
      ++floats;
    }
    for (const auto& t : m->named_buffers()) {
      if (t.value().is_floating_point()) {
        EXPECT_TRUE(torch::all(t.value() == expected[i]).item<bool>()) << i << " " << t.key();
        ++floats;
      } else {
        // A batch counter is not a weight: the first file's, not a mean (7, not 53).
        EXPECT_TRUE(torch::all(t.value() == 7).item<bool>()) << i << " " << t.key();
        ++counters;
      }
    }
    EXPECT_GT(floats, 100u);
    EXPECT_GT(counters, 10u);                                 // one per BatchNorm
    EXPECT_FLOAT_EQ(m->config().postprocess.vote_iou, 0.7f);  // the first file's
  }
}

TEST_F(Average, RandomModelsAgainstElementwiseMean) {
  const auto config = testing::tiny_config(3, 6);
  const auto a = random_model("a.pt", 1, config), b = random_model("b.pt", 2, config),
             c = random_model("c.pt", 3, config);
  auto m = average_models({a, b, c}, {1, 2, 5});
  auto ma = load_model(a), mb = load_model(b), mc = load_model(c);
  auto pa = ma->named_parameters(), pb = mb->named_parameters(), pc = mc->named_parameters();
  int64_t differing = 0;
  for (const auto& p : m->named_parameters()) {
    const auto& k = p.key();
    // Element by element in double, then rounded once to float, as a user would compute it.
    const auto want = ((pa[k].to(torch::kDouble) * 1 + pb[k].to(torch::kDouble) * 2 +
                        pc[k].to(torch::kDouble) * 5) /
                       8)
                          .to(torch::kFloat);
    // One float step either way: the two sums may round differently.
    EXPECT_TRUE(torch::allclose(p.value(), want, 1.2e-7, 1e-9)) << k;
    differing += (p.value() != pa[k]).sum().item<int64_t>();
  }
  EXPECT_GT(differing, 1000);  // the mean is not the first file's weights
  // A model averaged with itself is itself, bit for bit, whatever the weights.
  auto same = average_models({a, a}, {0.3, 0.7});
  for (const auto& p : same->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), pa[p.key()])) << p.key();
  }
}

TEST_F(Average, RefusesBadInputNamingIt) {
  const auto a = random_model("a.pt", 1, testing::tiny_config(3, 6));
  const auto b = random_model("b.pt", 2, testing::tiny_config(3, 6));
  expect_refusal({a}, {}, "at least two model files, got 1");
  expect_refusal({a, b}, {1, 2, 3}, "3 weights for 2 model files");
  expect_refusal({a, b}, {1, 0}, "the weight of " + b + " must be finite and > 0");
  expect_refusal({a, b}, {-1, 1}, "the weight of " + a + " must be finite and > 0");
  expect_refusal({a, b}, {1, std::nan("")}, "the weight of " + b);
  // Another architecture: other classes, other levels.
  const auto four = random_model("four.pt", 3, testing::tiny_config(4, 6));
  expect_refusal({a, four}, {}, four + " is another architecture than " + a);
  const auto p5 = random_model("p5.pt", 3, testing::tiny_config(3, 5));
  expect_refusal({p5, a}, {}, a + " is another architecture than " + p5);
  // A tensor that is not finite would poison every average it enters.
  {
    auto m = load_model(b);
    torch::NoGradGuard g;
    auto params = m->named_parameters();
    params[params.keys().front()].view(-1)[0] = std::numeric_limits<float>::infinity();
    save_model(dir + "/inf.pt", m);
    expect_refusal({a, dir + "/inf.pt"}, {},
                   dir + "/inf.pt: tensor '" + params.keys().front() + "' holds a NaN");
  }
  try {
    average_models({a, dir + "/missing.pt"});
    FAIL() << "a missing file was averaged";
  } catch (const ModelFileError& e) {
    EXPECT_EQ(e.kind(), ModelFileError::Kind::kNotFound) << e.what();
  }
}

TEST_F(Average, CommandWritesTheMean) {
  const char* cli = std::getenv("AUTOASSIGN_CLI");
  ASSERT_NE(cli, nullptr);
  const auto a = constant_model("a.pt", 1.0f, 7), b = constant_model("b.pt", 5.0f, 100);
  const std::string out = dir + "/soup.pt", log = dir + "/average.txt";
  const std::string cmd = std::string(cli) + " average " + a + " " + b + " --weights 1,3 -o " +
                          out + " > " + log + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << testing::read_file_bytes(log);
  EXPECT_NE(testing::read_file_bytes(log).find("the mean of 2 files"), std::string::npos);
  auto m = load_model(out);
  for (const auto& p : m->parameters()) EXPECT_TRUE(torch::all(p == 4.0f).item<bool>());
  // A bad weight is a usage error naming the file, and nothing is written.
  const std::string bad_out = dir + "/bad.pt";
  const std::string bad = std::string(cli) + " average " + a + " " + b + " --weights 1,-2 -o " +
                          bad_out + " > " + log + " 2>&1";
  EXPECT_NE(std::system(bad.c_str()), 0);
  EXPECT_NE(testing::read_file_bytes(log).find("the weight of " + b), std::string::npos)
      << testing::read_file_bytes(log);
  EXPECT_FALSE(std::ifstream(bad_out).good());
}

}  // namespace
}  // namespace autoassign
