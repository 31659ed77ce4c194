// SPDX-License-Identifier: MIT
// The distillation term against values computed by hand, the unannotated-face rule on hand-made
// boxes, the student's pixels recovered from a batch, and the teacher in real training runs.
#include "autoassign/train/teacher/distill.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "autoassign/data/dataset.h"
#include "autoassign/infer/preprocess.h"
#include "autoassign/train/distributed.h"
#include "autoassign/train/engine/trainer.h"
#include "fixtures.h"

namespace autoassign {
namespace {

// A head output of one class from per-level (cls, obj) logit maps [B, H, W].
HeadOutput head(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& levels) {
  HeadOutput out;
  for (const auto& [c, o] : levels) {
    out.cls_logits.push_back(c.unsqueeze(1));
    out.obj_logits.push_back(o.unsqueeze(1));
    out.distances.push_back(torch::zeros({c.size(0), 4, c.size(1), c.size(2)}));
  }
  return out;
}

// The hand-computed example below: level 0 with (cls, obj) logits (0, 0) and (-2, 1), level 1
// (2x2 zeros) without a teacher map, level 2 with (2, -1); the teacher's scores 0.8, 0 and 1.
HeadOutput hand_outputs() {
  return head(
      {{torch::tensor({0.f, -2.f}).view({1, 1, 2}), torch::tensor({0.f, 1.f}).view({1, 1, 2})},
       {torch::zeros({1, 2, 2}), torch::zeros({1, 2, 2})},
       {torch::tensor({2.f}).view({1, 1, 1}), torch::tensor({-1.f}).view({1, 1, 1})}});
}
std::vector<torch::Tensor> hand_teacher() {
  return {torch::tensor({0.8f, 0.f}).view({1, 1, 2}), torch::Tensor(),
          torch::tensor({1.f}).view({1, 1, 1})};
}

// By hand, with p = s(c) s(o), s the logistic function, term = |t - p|^2 BCE(p, t):
//   (c, o, t) = (0, 0, 0.8):  p = 0.25,  |0.55|^2 = 0.3025,
//     BCE = -(0.8 ln 0.25 + 0.2 ln 0.75) = 1.1090355 + 0.0575364 = 1.1665719;  term 0.3528880
//   (-2, 1, 0):  p = 0.1192029 x 0.7310586 = 0.0871443,  p^2 = 0.0075941,
//     BCE = -ln(1 - p) = 0.0911781;  term 0.00069241
//   (2, -1, 1):  p = 0.8807971 x 0.2689414 = 0.2368828,  (1 - p)^2 = 0.5823479,
//     BCE = -ln p = 1.4401931;  term 0.8386914
// Teacher mass 0.8 + 0 + 1 = 1.8: loss = (0.3528880 + 0.0006924 + 0.8386914) / 1.8 = 0.6623732.
TEST(ScoreDistillation, EqualsTheHandComputedQualityFocalLoss) {
  const auto out = hand_outputs();
  const auto teacher = hand_teacher();
  EXPECT_NEAR(score_distillation_loss(out, teacher).item<double>(), 0.6623732, 1e-6);
  // Under one face's worth of teacher score the sum is not scaled up: 0.3528880 / max(1, 0.8).
  const std::vector<torch::Tensor> one = {torch::tensor({0.8f, 0.f}).view({1, 1, 2}),
                                          torch::Tensor(), torch::Tensor()};
  EXPECT_NEAR(score_distillation_loss(out, one).item<double>(), 0.3528880 + 0.0006924, 1e-6);
  // The ranks' average of the mass is the normaliser: (sum) / 3.6 when the others hold more.
  EXPECT_NEAR(
      score_distillation_loss(out, teacher, 2.0, [](double m) { return 2 * m; }).item<double>(),
      0.6623732 / 2, 1e-6);
}

// Inside annotated faces the teacher may only raise the score: of the three terms above, the
// second (p 0.087 over the teacher's 0) drops out where flagged, the others (p under t) stay:
// (0.3528880 + 0.8386914) / 1.8 = 0.6619886.
TEST(ScoreDistillation, RaiseOnlyWhereFlaggedDropsTheTermsThatWouldLowerTheScore) {
  const auto out = hand_outputs();
  const auto teacher = hand_teacher();
  const std::vector<torch::Tensor> all = {torch::ones({1, 1, 2}, torch::kBool), torch::Tensor(),
                                          torch::ones({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, all).item<double>(), 0.6619886,
              1e-6);
  // Flagged nowhere: the full term.
  const std::vector<torch::Tensor> none = {torch::zeros({1, 1, 2}, torch::kBool), torch::Tensor(),
                                           torch::zeros({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, none).item<double>(), 0.6623732,
              1e-6);
}

// Suppress: only the terms where the student is above the teacher and away from every
// annotation count. Of the three, only the second (p 0.087 over t 0): 0.00069241 / 1.8; with its
// location inside an annotation, nothing.
TEST(ScoreDistillation, SuppressOnlyLowersConfidentScoresAwayFromAnnotations) {
  const auto out = hand_outputs();
  const auto teacher = hand_teacher();
  const std::vector<torch::Tensor> nowhere = {torch::zeros({1, 1, 2}, torch::kBool),
                                              torch::Tensor(),
                                              torch::zeros({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, {}, nowhere).item<double>(),
              0.00069241 / 1.8, 1e-8);
  const std::vector<torch::Tensor> second = {torch::tensor({false, true}).view({1, 1, 2}),
                                             torch::Tensor(),
                                             torch::zeros({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, {}, second).item<double>(), 0,
              1e-12);
}

// Both masks (suppress with --distill-raise-min-size): away from the annotations the term counts
// where p > t, inside the large faces where p < t, elsewhere not. Level 0's first location
// inside a large face (p 0.25 under t 0.8: raised), its second away from every annotation (p
// 0.087 over t 0: lowered); level 2's inside a small face (p under t, not raised):
// (0.3528880 + 0.00069241) / 1.8. Flagged inside a large face, the second drops out (the
// teacher never lowers a face).
TEST(ScoreDistillation, SuppressWithRaiseInsideLargeFacesCountsBothDirections) {
  const auto out = hand_outputs();
  const auto teacher = hand_teacher();
  const std::vector<torch::Tensor> inside = {torch::tensor({true, false}).view({1, 1, 2}),
                                             torch::Tensor(), torch::ones({1, 1, 1}, torch::kBool)};
  const std::vector<torch::Tensor> large = {torch::tensor({true, false}).view({1, 1, 2}),
                                            torch::Tensor(), torch::zeros({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, large, inside).item<double>(),
              (0.3528880 + 0.00069241) / 1.8, 1e-7);
  const std::vector<torch::Tensor> both = {torch::ones({1, 1, 2}, torch::kBool), torch::Tensor(),
                                           torch::ones({1, 1, 1}, torch::kBool)};
  EXPECT_NEAR(score_distillation_loss(out, teacher, 2.0, nullptr, both, both).item<double>(),
              (0.3528880 + 0.8386914) / 1.8, 1e-7);
}

// By hand: a face (10, 10, 30, 30) and an ignore region (20, 20, 40, 40). Stride 8 (locations
// 0, 8, ..., 32): 16 and 24 lie strictly inside the face, 24 and 32 inside the region; stride 16
// (0, 16, 32): 16 inside the face, 32 inside the region. A second image has nothing.
TEST(InsideObjects, MarksTheLocationsStrictlyInsideFacesAndIgnoreRegions) {
  Target t;
  t.boxes = torch::tensor({10.f, 10.f, 30.f, 30.f}).view({1, 4});
  t.ignore = torch::tensor({20.f, 20.f, 40.f, 40.f}).view({1, 4});
  Target empty;
  empty.boxes = torch::zeros({0, 4});
  const auto masks = inside_objects({t, empty}, {8, 16}, {{5, 5}, {3, 3}});
  ASSERT_EQ(masks.size(), 2u);
  auto want8 = torch::zeros({2, 5, 5}, torch::kBool);
  for (int y : {2, 3}) {
    for (int x : {2, 3}) want8[0][y][x] = true;
  }
  for (int y : {3, 4}) {
    for (int x : {3, 4}) want8[0][y][x] = true;
  }
  auto want16 = torch::zeros({2, 3, 3}, torch::kBool);
  want16[0][1][1] = true;
  want16[0][2][2] = true;
  EXPECT_TRUE(torch::equal(masks[0], want8)) << masks[0];
  EXPECT_TRUE(torch::equal(masks[1], want16)) << masks[1];
  // Faces of shorter side at least 20 only (the face is 20 x 20; the region never counts).
  const auto large = inside_objects({t, empty}, {8, 16}, {{5, 5}, {3, 3}}, 20);
  auto face8 = torch::zeros({2, 5, 5}, torch::kBool);
  for (int y : {2, 3}) {
    for (int x : {2, 3}) face8[0][y][x] = true;
  }
  auto face16 = torch::zeros({2, 3, 3}, torch::kBool);
  face16[0][1][1] = true;
  EXPECT_TRUE(torch::equal(large[0], face8)) << large[0];
  EXPECT_TRUE(torch::equal(large[1], face16)) << large[1];
  const auto larger = inside_objects({t, empty}, {8, 16}, {{5, 5}, {3, 3}}, 20.5);
  EXPECT_EQ(larger[0].sum().item<int64_t>() + larger[1].sum().item<int64_t>(), 0);
}

// Against brute force (every location tested against every box, as a tensor expression): 300
// random boxes per image, fractional and on the grid, reaching past the map on every side,
// empty ones, and huge, infinite and NaN coordinates.
TEST(InsideObjects, EqualsBruteForceOnRandomBoxes) {
  torch::manual_seed(3);
  std::vector<Target> targets(3);
  for (auto& t : targets) {
    auto xy = torch::rand({300, 2}) * 700 - 30;
    auto wh = torch::rand({300, 2}) * 90 - 5;  // some negative: empty boxes
    auto boxes = torch::cat({xy, xy + wh}, 1);
    boxes.index_put_({torch::indexing::Slice(0, 40)},
                     (boxes.index({torch::indexing::Slice(0, 40)}) / 8).round() * 8);
    t.boxes = boxes.index({torch::indexing::Slice(0, 200)});
    t.ignore = boxes.index({torch::indexing::Slice(200, 300)});
  }
  const float inf = std::numeric_limits<float>::infinity();
  targets[1].boxes[0] = torch::tensor({-inf, 100.f, inf, 120.f});
  targets[1].boxes[1] = torch::tensor({1e30f, 0.f, 2e30f, 1e30f});
  targets[1].boxes[2] = torch::tensor({std::nanf(""), 0.f, 50.f, 50.f});
  const std::vector<int> strides = {8, 16, 32, 64};
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{48, 80}, {24, 40}, {12, 20}, {6, 10}};
  // min_side 0: faces and ignore regions; 40: the faces whose shorter side is at least 40.
  for (const double min_side : {0.0, 40.0}) {
    const auto masks = inside_objects(targets, strides, shapes, min_side);
    for (size_t l = 0; l < strides.size(); ++l) {
      const auto [H, W] = shapes[l];
      const float s = static_cast<float>(strides[l]);
      const auto ys = (torch::arange(H, torch::kFloat) * s).view({1, H, 1});
      const auto xs = (torch::arange(W, torch::kFloat) * s).view({1, 1, W});
      for (size_t b = 0; b < targets.size(); ++b) {
        auto all =
            min_side > 0 ? targets[b].boxes : torch::cat({targets[b].boxes, targets[b].ignore});
        if (min_side > 0) {
          const auto side =
              torch::min(all.select(1, 2) - all.select(1, 0), all.select(1, 3) - all.select(1, 1));
          all = all.index({side >= min_side});
        }
        all = all.view({-1, 1, 1, 4});
        const auto x1 = all.select(3, 0), y1 = all.select(3, 1), x2 = all.select(3, 2),
                   y2 = all.select(3, 3);
        const auto want = ((xs > x1) & (xs < x2) & (ys > y1) & (ys < y2)).any(0);
        EXPECT_TRUE(torch::equal(masks[l][static_cast<int64_t>(b)], want))
            << "stride " << s << " image " << b << " min_side " << min_side;
      }
      EXPECT_GT(masks[l].sum().item<int64_t>(), 0) << "min_side " << min_side;
    }
  }
}

TEST(ScoreDistillation, PullsTheStudentsScoreTowardsTheTeachers) {
  auto c = torch::tensor({0.f, 0.f, 3.f}).view({1, 1, 3}).requires_grad_(true);
  auto o = torch::tensor({0.f, 0.f, 3.f}).view({1, 1, 3}).requires_grad_(true);
  // p = 0.25, 0.25, 0.9526^2 = 0.9074: taught 0.9 (up), 0.25 (stay), 0.1 (down).
  const auto out = head({{c, o}});
  score_distillation_loss(out, {torch::tensor({0.9f, 0.25f, 0.1f}).view({1, 1, 3})}).backward();
  const auto gc = c.grad().flatten(), go = o.grad().flatten();
  EXPECT_LT(gc[0].item<double>(), 0);
  EXPECT_LT(go[0].item<double>(), 0);
  EXPECT_NEAR(gc[1].item<double>(), 0, 1e-12);  // |t - p|^2 = 0: no pull at the teacher's score
  EXPECT_GT(gc[2].item<double>(), 0);
  EXPECT_GT(go[2].item<double>(), 0);
}

TEST(ScoreDistillation, RefusesMapsOfAnotherShape) {
  const auto out = head({{torch::zeros({2, 3, 4}), torch::zeros({2, 3, 4})}});
  try {
    score_distillation_loss(out, {torch::zeros({2, 4, 3})});
    FAIL() << "a transposed map was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("level 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(score_distillation_loss(out, {}), std::invalid_argument);
}

TEST(UnlabelledFaces, ConfidentTeacherFacesMatchingNoAnnotationBecomeIgnoreRegions) {
  Target t;
  t.boxes = torch::tensor({10.f, 10.f, 30.f, 30.f}).view({1, 4});
  t.labels = torch::zeros({1}, torch::kLong);
  t.ignore = torch::tensor({100.f, 100.f, 120.f, 120.f}).view({1, 4});
  const std::vector<TeacherBox> found = {
      {11, 11, 31, 31, 0.95f},      // the annotated face (IoU 0.82): nothing to add
      {200, 200, 220, 220, 0.9f},   // an unannotated face: added
      {300, 300, 320, 320, 0.5f},   // under the score: not added
      {101, 101, 121, 121, 0.95f},  // inside the ignore region already (IoU 0.82)
      {20, 20, 40, 40, 0.99f},      // IoU 100 / 700 = 0.14 with the face: a neighbour, added
  };
  EXPECT_EQ(add_unlabelled_faces(t, found, 0.8), 2);
  ASSERT_EQ(t.ignore.size(0), 3);
  EXPECT_TRUE(torch::equal(t.ignore[1], torch::tensor({200.f, 200.f, 220.f, 220.f})));
  EXPECT_TRUE(torch::equal(t.ignore[2], torch::tensor({20.f, 20.f, 40.f, 40.f})));
  // No annotation at all: every confident box is added, into an undefined ignore tensor.
  Target empty;
  empty.boxes = torch::zeros({0, 4});
  EXPECT_EQ(add_unlabelled_faces(empty, found, 0.8), 4);
  EXPECT_EQ(empty.ignore.size(0), 4);
}

TEST(InputPixels, RecoverTheImageTheStudentSees) {
  for (const char* order : {"BGR", "RGB"}) {
    ModelConfig config = testing::tiny_config(1, 5, 96, 64);
    config.input.channel_order = order;
    const cv::Mat bgr = testing::square_picture(96, 64, {10, 10, 40, 40});
    const Preprocessor pre(config.input);
    ImageGeometry geometry;
    const auto x = pre(ImageView::packed(PixelFormat::kBGR, bgr.data, bgr.cols, bgr.rows,
                                         static_cast<int>(bgr.step)),
                       &geometry);
    const cv::Mat back = input_pixels(x, config.input);
    cv::Mat want;
    bgr.convertTo(want, CV_32FC3);
    EXPECT_LT(cv::norm(back(cv::Rect(0, 0, 96, 64)), want, cv::NORM_INF), 1e-3) << order;
  }
}

std::string peer(const char* file) {
  const char* dir = std::getenv("AUTOASSIGN_PEERS");
  return std::string(dir ? dir : "") + "/" + file;
}

class TeacherTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = testing::shared_data_dir();
    if (data.empty()) return;
    dataset = load_widerface(data + "/widerface", "train");
    dataset.samples.resize(4);
    config = testing::tiny_config(1, 6, 160, 96);
    config.class_names = {"face"};
    options.iterations = 3;
    options.batch_size = 2;
    options.log_every = 1;
    options.threads = 2;
    options.quiet = true;
    options.output_dir = testing::temp_dir() + "/teacher-run";
    options.teacher = peer("yunet_n_640_640.onnx");
  }
  Dataset dataset;
  ModelConfig config;
  TrainOptions options;
};

// The maps the loader makes have the network's level shapes (P3-P5 from the teacher, none at
// P6), and they carry the teacher's opinion: the highest score sits on an annotated face.
TEST_F(TeacherTraining, LoaderMapsFitTheNetworksLevels) {
  options.loader_threads = 1;
  TeacherHook hook(options, config.input, {8, 16, 32, 64});
  Batch batch = BatchMaker(config, dataset, options, 0, 1).make(0);
  hook.prepare_batch(batch, 0);
  AutoAssign model(config);
  model->eval();
  const auto out = model->forward(batch.images);
  ASSERT_EQ(batch.teacher_scores.size(), out.cls_logits.size());
  for (size_t l = 0; l < 3; ++l) {
    const auto& c = out.cls_logits[l];
    EXPECT_EQ(batch.teacher_scores[l].sizes(),
              (std::vector<int64_t>{c.size(0), c.size(2), c.size(3)}))
        << "level " << l;
  }
  EXPECT_FALSE(batch.teacher_scores[3].defined());
  EXPECT_NO_THROW(score_distillation_loss(out, batch.teacher_scores));
  // The same batch with P3 left to the labels: no map at stride 8, the others unchanged.
  TrainOptions coarse = options;
  coarse.distill_min_stride = 16;
  TeacherHook hook16(coarse, config.input, {8, 16, 32, 64});
  Batch again = BatchMaker(config, dataset, options, 0, 1).make(0);
  hook16.prepare_batch(again, 0);
  EXPECT_FALSE(again.teacher_scores[0].defined());
  EXPECT_TRUE(torch::equal(again.teacher_scores[1], batch.teacher_scores[1]));
  EXPECT_TRUE(torch::equal(again.teacher_scores[2], batch.teacher_scores[2]));
  // And it carries the teacher's opinion: somewhere a confident face.
  EXPECT_GT(batch.teacher_scores[1].max().item<double>(), 0.3);

  // The hook's term in suppress mode, with and without raising inside the faces of at least
  // 8 px, against the function given the masks inside_objects makes: raising adds terms.
  const auto comm = make_communicator_from_env();
  torch::optim::SGD sgd(model->parameters(), 0.01);
  const BatchMaker maker(config, dataset, options, 0, 1);
  const std::string summary;
  TrainContext ctx{config, options, *comm, model, sgd, maker, summary};
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (const auto& c : out.cls_logits) shapes.emplace_back(c.size(2), c.size(3));
  const std::vector<int> strides = {8, 16, 32, 64};
  const auto everywhere = inside_objects(batch.targets, strides, shapes);
  const auto large = inside_objects(batch.targets, strides, shapes, 8);
  ASSERT_GT(large[0].sum().item<int64_t>(), 0);
  double term[2];
  for (const double min_size : {0.0, 8.0}) {
    TrainOptions o = options;
    o.distill_weight = 2;
    o.distill_raise_min_size = min_size;
    TeacherHook h(o, config.input, strides);
    std::map<std::string, torch::Tensor> losses;
    h.add_losses(ctx, batch, out, losses);
    const auto want =
        score_distillation_loss(out, batch.teacher_scores, 2.0, nullptr,
                                min_size > 0 ? large : std::vector<torch::Tensor>{}, everywhere);
    term[min_size > 0] = losses.at("loss_distill").item<double>();
    EXPECT_NEAR(term[min_size > 0], 2 * want.item<double>(), 1e-6) << "min size " << min_size;
  }
  EXPECT_GT(term[1], term[0]);
}

TEST_F(TeacherTraining, RunsLogTheTermAndTheCheckpointRecordsTheTeacher) {
  options.teacher_ignore = 0.6;
  options.distill_objects = "raise";
  options.loader_threads = 2;
  const auto comm = make_communicator_from_env();
  const auto result = train(config, dataset, options, *comm);
  EXPECT_EQ(result.iterations_done, 3);
  std::ifstream in(options.output_dir + "/log.jsonl");
  int rows = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    const auto row = nlohmann::json::parse(line);
    ASSERT_TRUE(row.contains("loss_distill")) << line;
    EXPECT_GT(row["loss_distill"].get<double>(), 0) << line;
    EXPECT_TRUE(std::isfinite(row["loss"].get<double>())) << line;
  }
  EXPECT_EQ(rows, 3);
  // A resume with another teacher setting is another run: refused, naming it.
  options.resume = true;
  options.iterations = 4;
  options.distill_weight = 2;
  try {
    train(config, dataset, options, *comm);
    ADD_FAILURE() << "resumed with another distill_weight";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("distill_weight"), std::string::npos) << e.what();
  }
}

TEST_F(TeacherTraining, OptionsAreCheckedBeforeAnythingRuns) {
  auto error_of = [&](TrainOptions o, const ModelConfig& c) -> std::string {
    try {
      validate_train_options(o, c);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  TrainOptions o = options;
  o.teacher = "";
  o.teacher_ignore = 0.5;
  EXPECT_NE(error_of(o, config).find("teacher_ignore needs a teacher"), std::string::npos);
  o.teacher_ignore = 0;
  o.distill_raise_min_size = 32;
  EXPECT_NE(error_of(o, config).find("distill_raise_min_size needs a teacher"), std::string::npos);
  o = options;
  o.distill_objects = "raise";
  o.distill_raise_min_size = 32;
  EXPECT_NE(error_of(o, config).find("works with distill_objects \"suppress\""), std::string::npos)
      << error_of(o, config);
  o.distill_objects = "suppress";
  EXPECT_EQ(error_of(o, config), "");
  o = options;
  o.teacher = options.output_dir + "/none.onnx";
  EXPECT_NE(error_of(o, config).find("none.onnx: no such file"), std::string::npos)
      << error_of(o, config);
  ModelConfig two = testing::tiny_config(2, 6, 160, 96);
  EXPECT_NE(error_of(options, two).find("single-class"), std::string::npos);
  o = options;
  o.distill_weight = 0;
  EXPECT_NE(error_of(o, config).find("change nothing"), std::string::npos);
  o.distill_weight = -1;
  EXPECT_NE(error_of(o, config).find("distill_weight"), std::string::npos);
  o = options;
  o.distill_objects = "lower";
  EXPECT_NE(error_of(o, config).find("distill_objects"), std::string::npos);
}

}  // namespace
}  // namespace autoassign
