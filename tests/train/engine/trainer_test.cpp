// SPDX-License-Identifier: MIT
// The real trainer on a handful of real WIDER FACE images: losses finite and falling, an
// interrupted-then-resumed run equal to an uninterrupted one, Ctrl-C writing a checkpoint,
// and two processes (c10d/Gloo on 127.0.0.1) equal to one process on the combined batch.
#include "autoassign/train/engine/trainer.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/detector.h"
#include "fixtures.h"

namespace autoassign {
namespace {

std::string data_dir() {
  static const std::string d = testing::shared_data_dir();
  return d;
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(data_dir().empty());
    dataset = load_widerface(data_dir() + "/widerface", "train");
    dataset.samples.resize(4);
    config = testing::tiny_config(1, 5, 160, 96);
    config.class_names = {"face"};
    options.iterations = 30;
    options.batch_size = 2;
    options.lr = 0.01;
    options.warmup_iterations = 3;
    options.log_every = 1;
    options.checkpoint_every = 1000;
    options.threads = 2;
    options.quiet = true;
    options.crop_min = 0.6;
    options.seed = 5;
  }

  static std::vector<nlohmann::json> read_log(const std::string& dir) {
    std::ifstream in(dir + "/log.jsonl");
    std::vector<nlohmann::json> rows;
    std::string line;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
    return rows;
  }

  static double max_weight_difference(const std::string& a, const std::string& b) {
    auto ma = load_model(a), mb = load_model(b);
    auto pa = ma->named_parameters(), pb = mb->named_parameters();
    double diff = 0;
    for (const auto& p : pa) {
      diff = std::max(diff, (p.value() - *pb.find(p.key())).abs().max().item<double>());
    }
    return diff;
  }

  Dataset dataset;
  ModelConfig config;
  TrainOptions options;
};

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void average(std::vector<torch::Tensor>&) override {}
  double average(double v) override { return v; }
  void broadcast(std::vector<torch::Tensor>&) override {}
};

// Where each annotation goes in a batch: a gt, an ignore region or nowhere. A 320x192 picture
// letterboxed into 160x96 (no crop, no flip) halves every coordinate.
TEST(BatchMakerTargets, IgnoredAndTooSmallObjectsBecomeIgnoreRegions) {
  const std::string image = testing::temp_dir() + "/targets.png";
  ASSERT_TRUE(cv::imwrite(image, testing::square_picture(320, 192, {20, 20, 80, 80})));
  Dataset data;
  data.name = "synthetic";
  data.class_names = {"face"};
  Sample s;
  s.image = image;
  s.objects = {{20, 20, 100, 100, 0, false},   // 40x40 at the input
               {200, 40, 210, 52, 0, false},   // 5x6 at the input
               {240, 100, 300, 180, 0, true},  // invalid: 30x40 at the input
               {280, 10, 380, 50, 0, false}};  // centre x 330 outside the 320-px picture
  data.samples = {s};
  const ModelConfig config = testing::tiny_config(1, 5, 160, 96);
  auto targets_with = [&](bool regions, double below, bool cut = false) {
    TrainOptions o;
    o.batch_size = 1;
    o.hflip = false;
    o.ignore_regions = regions;
    o.ignore_below = below;
    o.ignore_cut = cut;
    return BatchMaker(config, data, o, 0, 1).make(0).targets.at(0);
  };
  auto rows = [](const torch::Tensor& t) {
    std::vector<std::vector<float>> r;
    for (int64_t i = 0; i < t.size(0); ++i) {
      r.push_back({t[i][0].item<float>(), t[i][1].item<float>(), t[i][2].item<float>(),
                   t[i][3].item<float>()});
    }
    return r;
  };
  using Rows = std::vector<std::vector<float>>;
  const Rows a = {{10, 10, 50, 50}}, b = {{100, 20, 105, 26}}, c = {{120, 50, 150, 90}};
  // The cut face (centre outside) is dropped in all four cases below.
  // [OFF]'s treatment: the invalid face is dropped (background), the tiny one is a gt.
  auto t = targets_with(false, 0);
  EXPECT_EQ(rows(t.boxes), (Rows{a[0], b[0]}));
  EXPECT_EQ(t.ignore.size(0), 0);
  // Both options: only the 40-px face is learnt; the other two are ignore regions.
  t = targets_with(true, 8);
  EXPECT_EQ(rows(t.boxes), a);
  EXPECT_EQ(t.labels.size(0), 1);
  EXPECT_EQ(rows(t.ignore), (Rows{b[0], c[0]}));
  // The size rule alone: the invalid face is still dropped.
  t = targets_with(false, 8);
  EXPECT_EQ(rows(t.boxes), a);
  EXPECT_EQ(rows(t.ignore), b);
  // A threshold under the tiny face's 5 px keeps it a gt.
  t = targets_with(true, 5);
  EXPECT_EQ(rows(t.boxes), (Rows{a[0], b[0]}));
  EXPECT_EQ(rows(t.ignore), c);
  // ignore_cut: the cut face's visible part, (140, 5, 160, 25) at the input, is an ignore
  // region, with or without the other rules.
  const Rows d = {{140, 5, 160, 25}};
  t = targets_with(true, 8, true);
  EXPECT_EQ(rows(t.boxes), a);
  EXPECT_EQ(rows(t.ignore), (Rows{b[0], c[0], d[0]}));
  t = targets_with(false, 0, true);
  EXPECT_EQ(rows(t.boxes), (Rows{a[0], b[0]}));
  EXPECT_EQ(rows(t.ignore), d);
}

// --grow: a wider face-rt (C4 96->128, C5 128->192, FPN and head 48->56) started from a
// narrower one computes the same outputs, in eval mode and in training mode (batch statistics),
// and its added channels receive gradients.
TEST(InitGrow, WiderNetworkComputesTheSameAndLearnsTheAddedChannels) {
  torch::manual_seed(3);
  ModelConfig narrow = ModelConfig::preset("face-rt");
  narrow.backbone.channels = {16, 32, 64, 96, 128};
  narrow.fpn.channels = narrow.head.channels = 48;
  AutoAssign small(narrow);
  {
    torch::NoGradGuard no_grad;
    // Not the fresh initialisation: every weight, bias and BN statistic matters.
    for (auto& p : small->parameters()) p.add_(torch::randn_like(p) * 0.05);
    for (auto& b : small->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.1);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
    }
  }
  const std::string file = testing::temp_dir() + "/narrow.pt";
  save_model(file, small);
  ModelConfig wide = narrow;
  wide.backbone.channels = {16, 32, 64, 128, 192};
  wide.fpn.channels = 56;
  wide.head.channels = 56;
  AutoAssign big(wide);
  try {
    init_from_model(big, file);
    FAIL() << "a wider network took the narrow weights without --grow";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("(a wider network: --grow)"), std::string::npos)
        << e.what();
  }
  init_from_model(big, file, /*grow=*/true);
  const auto x = torch::randn({2, 3, 128, 192});
  auto compare = [&](bool training) {
    small->train(training);
    big->train(training);
    torch::NoGradGuard no_grad;
    const auto a = small->forward(x), b = big->forward(x);
    ASSERT_EQ(a.cls_logits.size(), b.cls_logits.size());
    for (size_t l = 0; l < a.cls_logits.size(); ++l) {
      for (const auto& [u, v] : {std::pair{a.cls_logits[l], b.cls_logits[l]},
                                 std::pair{a.obj_logits[l], b.obj_logits[l]},
                                 std::pair{a.distances[l], b.distances[l]}}) {
        const double scale = std::max(1.0, u.abs().max().item<double>());
        EXPECT_LT((u - v).abs().max().item<double>(), 1e-4 * scale)
            << "level " << l << (training ? " (training mode)" : " (eval mode)");
      }
    }
  };
  compare(false);
  compare(true);
  // Every weight that reads an added channel starts at zero and is trained from step one.
  big->train();
  const auto out = big->forward(x);
  auto loss = torch::zeros({});
  for (size_t l = 0; l < out.cls_logits.size(); ++l) {
    loss = loss + out.cls_logits[l].pow(2).sum() + out.obj_logits[l].pow(2).sum() +
           out.distances[l].pow(2).sum();
  }
  loss.backward();
  const auto narrow_params = small->named_parameters();
  int readers = 0;
  for (const auto& p : big->named_parameters()) {
    const auto& n = narrow_params[p.key()];
    if (p.value().dim() < 2 || p.value().size(1) == n.size(1)) continue;
    ++readers;
    const int64_t old_in = n.size(1), added = p.value().size(1) - old_in;
    EXPECT_EQ(p.value().narrow(1, old_in, added).abs().max().item<double>(), 0.0) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().narrow(1, old_in, added).abs().max().item<double>(), 0.0)
        << p.key() << ": the added input channels get no gradient";
  }
  // C5 stage and its readers, FPN laterals/outputs/P6, tower, predictors.
  EXPECT_GE(readers, 8);
  // Another layout (a deeper tower, a frozen stage widened) is refused, naming why.
  auto expect_refused = [&](const ModelConfig& c, const std::string& why) {
    AutoAssign other(c);
    try {
      init_from_model(other, file, true);
      FAIL() << "grew into " << why;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  ModelConfig deeper = wide;
  deeper.head.num_convs = 3;
  expect_refused(deeper, "same network layout");
  ModelConfig frozen = wide;
  frozen.backbone.freeze_at = 2;
  expect_refused(frozen, "same network layout");  // freeze_at is part of the layout
  {
    ModelConfig narrow_frozen = narrow;
    narrow_frozen.backbone.freeze_at = 2;  // the stem and the stride-4 stage
    AutoAssign m(narrow_frozen);
    const std::string frozen_file = testing::temp_dir() + "/narrow-frozen.pt";
    save_model(frozen_file, m);
    AutoAssign deep_only(frozen);  // C4, C5 wider: allowed
    EXPECT_NO_THROW(init_from_model(deep_only, frozen_file, true));
    frozen.backbone.channels[1] = 48;
    AutoAssign stage(frozen);
    try {
      init_from_model(stage, frozen_file, true);
      FAIL() << "widened a frozen stage";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("frozen backbone stages (backbone.channels[1]"),
                std::string::npos)
          << e.what();
    }
  }
  // GroupNorm regroups channels when they are added: refused.
  ModelConfig gn = wide;
  gn.head.norm = "gn";
  gn.head.norm_per_level = false;
  gn.fpn.channels = gn.head.channels = 64;  // divisible by the 32 groups
  AutoAssign grouped(gn);
  try {
    init_from_model(grouped, file, true);
    FAIL() << "grew into a GroupNorm head";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("GroupNorm"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, LossesFiniteAndFalling) {
  options.output_dir = testing::temp_dir();
  SingleProcess comm;
  auto result = train(config, dataset, options, comm);
  EXPECT_EQ(result.iterations_done, 30);
  const auto rows = read_log(options.output_dir);
  ASSERT_EQ(rows.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += rows[i]["loss"].get<double>();
    last += rows[rows.size() - 1 - i]["loss"].get<double>();
    for (const char* k : {"loss_pos", "loss_neg", "loss_center"}) {
      EXPECT_TRUE(std::isfinite(rows[i][k].get<double>()));
    }
  }
  EXPECT_LT(last, first * 0.9) << "first five " << first / 5 << ", last five " << last / 5;
  // The model file it wrote loads and runs.
  EXPECT_NO_THROW(load_model(options.output_dir + "/model.pt"));
}

TEST_F(TrainerTest, ResumeContinuesExactly) {
  options.iterations = 6;
  // Without and with a weight average (then model.pt is the average, resumed from the
  // checkpoint's copy).
  for (double ema : {0.0, 0.9}) {
    SCOPED_TRACE("ema " + std::to_string(ema));
    options.ema = ema;
    options.ema_ramp = 2;
    options.resume = false;
    const std::string straight = testing::temp_dir(), resumed = testing::temp_dir();
    SingleProcess comm;
    options.output_dir = straight;
    train(config, dataset, options, comm);
    options.output_dir = resumed;
    options.stop_after = 3;
    EXPECT_EQ(train(config, dataset, options, comm).iterations_done, 3);
    options.stop_after = 0;
    options.resume = true;
    EXPECT_EQ(train(config, dataset, options, comm).iterations_done, 3);
    EXPECT_LT(max_weight_difference(straight + "/model.pt", resumed + "/model.pt"), 1e-6);
  }
}

// The weight average against the formula, step by step: a run without it keeps its raw
// weights after each step (snapshots), a run with it keeps the averages; both start from the
// same saved weights. a_0 = w_0, a_n = d_n a_(n-1) + (1 - d_n) w_n, d_n = ema (1 - e^(-n/ramp)),
// for every parameter and floating-point buffer (BatchNorm statistics).
TEST_F(TrainerTest, WeightAverageFollowsTheFormula) {
  config.backbone.norm = "bn";  // BatchNorm statistics are averaged too
  config.head.norm = "bn";
  config.validate();
  const std::string start = testing::temp_dir() + "/start.pt";
  {
    torch::manual_seed(11);
    AutoAssign m(config);
    save_model(start, m);
  }
  options.init = start;
  options.iterations = 3;
  options.snapshot_every = 1;
  options.lr = 0.05;  // steps large enough that the average differs clearly from the weights
  SingleProcess comm;
  const std::string raw = testing::temp_dir(), avg = testing::temp_dir();
  options.output_dir = raw;
  train(config, dataset, options, comm);
  options.output_dir = avg;
  options.ema = 0.8;
  options.ema_ramp = 1.5;
  train(config, dataset, options, comm);

  auto tensors = [](AutoAssign m) {
    std::map<std::string, torch::Tensor> t;
    for (const auto& p : m->named_parameters()) t[p.key()] = p.value().detach().clone();
    for (const auto& b : m->named_buffers()) {
      if (b.value().is_floating_point()) t[b.key()] = b.value().clone();
    }
    return t;
  };
  auto expected = tensors(load_model(start));
  bool saw_buffer = false;
  for (int n = 1; n <= 3; ++n) {
    const std::string name = "/model_iter_" + std::to_string(n) + ".pt";
    auto w = tensors(load_model(raw + name));
    auto got = tensors(load_model(avg + name));
    const double d = 0.8 * (1 - std::exp(-n / 1.5));
    double moved = 0;
    for (auto& [key, a] : expected) {
      a = d * a + (1 - d) * w.at(key);
      EXPECT_TRUE(torch::allclose(got.at(key), a, 1e-5, 1e-6)) << key << " after step " << n;
      moved = std::max(moved, (got.at(key) - w.at(key)).abs().max().item<double>());
      saw_buffer = saw_buffer || key.find("running_mean") != std::string::npos;
    }
    EXPECT_GT(moved, 1e-4) << "the average equals the weights after step " << n;
  }
  EXPECT_TRUE(saw_buffer) << "no BatchNorm statistics in the test model";
  // The last average is what model.pt holds.
  EXPECT_LT(max_weight_difference(avg + "/model.pt", avg + "/model_iter_3.pt"), 1e-9);
}

TEST_F(TrainerTest, StopRequestWritesACheckpoint) {
  options.output_dir = testing::temp_dir();
  options.iterations = 2;
  SingleProcess comm;
  g_stop_training = true;
  auto result = train(config, dataset, options, comm);
  g_stop_training = false;
  EXPECT_TRUE(result.interrupted);
  EXPECT_EQ(result.iterations_done, 1);
  options.resume = true;
  EXPECT_EQ(train(config, dataset, options, comm).iterations_done, 1);
}

TEST_F(TrainerTest, ResumeWithOtherSettingsIsRefused) {
  options.output_dir = testing::temp_dir();
  options.iterations = 4;
  options.stop_after = 1;
  SingleProcess comm;
  train(config, dataset, options, comm);
  options.resume = true;
  options.lr *= 2;  // another schedule: not a continuation
  try {
    train(config, dataset, options, comm);
    FAIL() << "resumed with another learning rate";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lr (checkpoint"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checkpoint.pt"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, CudaWithoutCudaIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "this LibTorch has CUDA";
  options.output_dir = testing::temp_dir();
  options.device = "cuda";
  SingleProcess comm;
  try {
    train(config, dataset, options, comm);
    FAIL() << "trained on cuda without CUDA";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, ZeroIntervalsAreRejected) {
  options.output_dir = testing::temp_dir();
  SingleProcess comm;
  options.checkpoint_every = 0;
  EXPECT_THROW(train(config, dataset, options, comm), std::invalid_argument);
  options.checkpoint_every = 1;
  options.log_every = 0;
  EXPECT_THROW(train(config, dataset, options, comm), std::invalid_argument);
}

// The options added for the v2 face recipe are checked before anything is built, and a
// backbone.reparam model (whose training aborts inside LibTorch 1.13) is refused, not run.
TEST_F(TrainerTest, NewOptionsAreChecked) {
  options.output_dir = testing::temp_dir();
  SingleProcess comm;
  auto expect_refused = [&](const TrainOptions& o, const ModelConfig& c, const std::string& part) {
    try {
      train(c, dataset, o, comm);
      FAIL() << "accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  TrainOptions o = options;
  o.crop_min = 0.5;
  o.crop_max = 0.4;
  expect_refused(o, config, "crop_max");
  o = options;
  o.precision = "fp16";
  expect_refused(o, config, "precision");
  o = options;
  o.force_topk = -1;
  expect_refused(o, config, "force_topk");
  o = options;
  o.ignore_below = -1;
  expect_refused(o, config, "ignore_below");
  o = options;
  o.ema = 1;
  expect_refused(o, config, "ema");
  o = options;
  o.ema = 0.99;
  o.ema_ramp = 0;
  expect_refused(o, config, "ema_ramp");
  ModelConfig rep = config;
  rep.backbone.reparam = true;
  expect_refused(options, rep, "backbone.reparam");  // the trainer says so even unvalidated
}

// bf16 training (autocast, channels-last) on real images: the loss stays finite and falls as
// in fp32, and what it writes is fp32 master weights (the model file holds no bf16 tensor).
TEST_F(TrainerTest, Bf16TrainingKeepsFp32WeightsAndLearns) {
  if (!cpu_features().avx512_core) GTEST_SKIP() << "no AVX-512: LibTorch has no bf16 convs here";
  options.output_dir = testing::temp_dir();
  options.precision = "bf16";
  options.channels_last = true;
  SingleProcess comm;
  train(config, dataset, options, comm);
  auto rows = read_log(options.output_dir);
  ASSERT_EQ(rows.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += rows[i]["loss"].get<double>() / 5;
  for (int i = 25; i < 30; ++i) last += rows[i]["loss"].get<double>() / 5;
  EXPECT_LT(last, first);
  auto model = load_model(options.output_dir + "/model.pt");
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value()).all().item<bool>()) << p.key();
  }
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The CLI on 8 real WIDER images with the tiny config, as one process on a batch of 4 (into
// DIR/one) or as two ranks on batches of 2 (DIR/two for rank 0), through c10d on 127.0.0.1.
class TwoRanks {
 public:
  TwoRanks(const std::string& cli, const ModelConfig& config, const std::string& extra)
      : dir_(testing::temp_dir()) {
    std::ofstream(dir_ + "/tiny.json") << config.to_json();
    common_ = cli + " train --config " + dir_ + "/tiny.json --widerface " + data_dir() +
              "/widerface --max-images 8 --warmup 0 --lr 0.02 --seed 3 --quiet --threads 1 " +
              "--crop-min 0.5 " + extra;
  }
  const std::string& dir() const { return dir_; }
  int one_process() const {
    return std::system((common_ + " --batch 4 --output " + dir_ + "/one").c_str());
  }
  // Both ranks with `extra` flags; true when both exit 0.
  bool two_processes(const std::string& extra) const {
    const std::string env =
        "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) + " WORLD_SIZE=2 RANK=";
    const std::string cmd = "(" + env + "1 " + common_ + " --batch 2 " + extra + " --output " +
                            dir_ + "/two1; echo $? > " + dir_ + "/rc1) & (" + env + "0 " + common_ +
                            " --batch 2 " + extra + " --output " + dir_ + "/two; echo $? > " +
                            dir_ + "/rc0); wait";
    if (std::system(("bash -c '" + cmd + "'").c_str()) != 0) return false;
    for (const char* rc : {"/rc0", "/rc1"}) {
      std::ifstream in(dir_ + rc);
      int code = -1;
      in >> code;
      if (code != 0) return false;
    }
    return true;
  }

 private:
  std::string dir_, common_;
};

TEST_F(TrainerTest, TwoProcessesEqualOneOnTheCombinedBatch) {
  const char* cli = std::getenv("AUTOASSIGN_CLI");
  if (!cli) GTEST_SKIP() << "AUTOASSIGN_CLI not set";
  const TwoRanks runs(cli, config, "--iterations 3");
  ASSERT_EQ(runs.one_process(), 0);
  ASSERT_TRUE(runs.two_processes(""));
  const std::string dir = runs.dir();
  EXPECT_LT(max_weight_difference(dir + "/one/model.pt", dir + "/two/model.pt"), 1e-5);
  // And the run did move the weights (the comparison is not between two initial models).
  torch::manual_seed(3);  // the seed the runs used: this is their initial model
  auto init = AutoAssign(config);
  EXPECT_GT(
      (load_model(dir + "/two/model.pt")->head->cls_pred->weight - init->head->cls_pred->weight)
          .abs()
          .max()
          .item<double>(),
      1e-4);
}

TEST_F(TrainerTest, TwoProcessesResumeExactly) {
  // Two ranks stopped after 2 of 4 iterations and resumed (only rank 0 has a checkpoint: it
  // hands iteration, weights and momentum to rank 1) end where one process running all 4
  // iterations on the combined batch ends.
  const char* cli = std::getenv("AUTOASSIGN_CLI");
  if (!cli) GTEST_SKIP() << "AUTOASSIGN_CLI not set";
  const TwoRanks runs(cli, config, "--iterations 4");
  const std::string dir = runs.dir();
  ASSERT_EQ(runs.one_process(), 0);
  ASSERT_TRUE(runs.two_processes("--stop-after 2"));
  EXPECT_GT(max_weight_difference(dir + "/one/model.pt", dir + "/two/model.pt"), 1e-4)
      << "half-way weights should differ from the finished run's";
  ASSERT_TRUE(runs.two_processes("--resume"));
  EXPECT_LT(max_weight_difference(dir + "/one/model.pt", dir + "/two/model.pt"), 1e-5);
}

}  // namespace
}  // namespace autoassign
