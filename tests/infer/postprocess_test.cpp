// SPDX-License-Identifier: MIT
// NMS against a brute-force reference, and the post-processing of section 5.
#include "autoassign/infer/postprocess.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "autoassign/infer/box_coder.h"

namespace autoassign {
namespace {

// Brute force, written from the definition: repeatedly take the highest-scoring remaining
// box (earliest index on ties), keep it, and delete every remaining box of its label whose IoU
// with it exceeds the threshold.
std::vector<int64_t> brute_force_nms(const std::vector<std::array<double, 4>>& boxes,
                                     const std::vector<double>& scores,
                                     const std::vector<int64_t>& labels, double thr) {
  std::set<int64_t> remaining;
  for (size_t i = 0; i < boxes.size(); ++i) remaining.insert(static_cast<int64_t>(i));
  std::vector<int64_t> keep;
  while (!remaining.empty()) {
    int64_t best = *remaining.begin();
    for (int64_t i : remaining) {
      if (scores[i] > scores[best]) best = i;
    }
    keep.push_back(best);
    remaining.erase(best);
    for (auto it = remaining.begin(); it != remaining.end();) {
      const auto& a = boxes[best];
      const auto& b = boxes[*it];
      const double iw = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
      const double ih = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
      const double inter = iw * ih;
      const double uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
      if (labels[*it] == labels[best] && inter / uni > thr) {
        it = remaining.erase(it);
      } else {
        ++it;
      }
    }
  }
  return keep;
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(Nms, MatchesBruteForceOnRandomBoxes) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> pos(0, 100), size(5, 40), score(0, 1);
  std::uniform_int_distribution<int> label(0, 2);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 50 + trial * 10;
    std::vector<std::array<double, 4>> boxes;
    std::vector<double> scores;
    std::vector<int64_t> labels;
    std::vector<float> flat;
    for (int i = 0; i < n; ++i) {
      const double x = pos(rng), y = pos(rng), w = size(rng), h = size(rng);
      // Coordinates are exact floats so that both sides see the same boxes.
      std::array<double, 4> b = {double(float(x)), double(float(y)), double(float(x + w)),
                                 double(float(y + h))};
      boxes.push_back(b);
      flat.insert(flat.end(), {float(b[0]), float(b[1]), float(b[2]), float(b[3])});
      scores.push_back(double(float(score(rng))));
      labels.push_back(label(rng));
    }
    auto tb = torch::tensor(flat).view({n, 4});
    auto ts = torch::tensor(std::vector<float>(scores.begin(), scores.end()));
    auto tl = torch::tensor(labels, torch::kLong);
    for (double thr : {0.3, 0.5, 0.7}) {
      const auto expected_single = brute_force_nms(boxes, scores, std::vector<int64_t>(n, 0), thr);
      EXPECT_EQ(to_vec(nms(tb, ts, thr)), expected_single) << "trial " << trial << " thr " << thr;
      const auto expected = brute_force_nms(boxes, scores, labels, thr);
      EXPECT_EQ(to_vec(nms(tb, ts, thr, tl)), expected) << "class-aware, trial " << trial;
      EXPECT_EQ(to_vec(nms_matrix(tb, ts, thr, tl)), expected) << "matrix path, trial " << trial;
    }
  }
}

TEST(Nms, PairExactlyAtThresholdIsKept) {
  // Two 10x10 boxes offset by 5 in x: inter 50, union 150, IoU = 1/3 exactly representable?
  // Use IoU = 0.5 exactly: [0,0,10,10] and [0,0,10,5]: inter 50, union 100.
  auto boxes = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {0.f, 0.f, 10.f, 5.f}});
  auto scores = torch::tensor({0.9f, 0.8f});
  ASSERT_FLOAT_EQ(box_iou(boxes.narrow(0, 0, 1), boxes.narrow(0, 1, 1)).item<float>(), 0.5f);
  EXPECT_EQ(to_vec(nms(boxes, scores, 0.5)), (std::vector<int64_t>{0, 1}));  // not > 0.5
  EXPECT_EQ(to_vec(nms(boxes, scores, 0.49)), (std::vector<int64_t>{0}));
  EXPECT_EQ(to_vec(nms_matrix(boxes, scores, 0.5)), (std::vector<int64_t>{0, 1}));
}

TEST(Nms, ClassAwareKeepsOverlappingBoxesOfOtherClasses) {
  auto boxes =
      torch::tensor({{0.f, 0.f, 10.f, 10.f}, {1.f, 1.f, 10.f, 10.f}, {0.f, 0.f, 9.f, 9.f}});
  auto scores = torch::tensor({0.9f, 0.8f, 0.7f});
  auto labels = torch::tensor({0, 1, 0}, torch::kLong);
  EXPECT_EQ(to_vec(nms(boxes, scores, 0.5, labels)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(to_vec(nms(boxes, scores, 0.5)), (std::vector<int64_t>{0}));
}

TEST(Nms, EmptyInput) {
  EXPECT_EQ(nms(torch::zeros({0, 4}), torch::zeros({0}), 0.5).numel(), 0);
  EXPECT_EQ(nms_matrix(torch::zeros({0, 4}), torch::zeros({0}), 0.5).numel(), 0);
}

TEST(Nms, RejectsBadShapes) {
  EXPECT_THROW(nms(torch::zeros({3, 5}), torch::zeros({3}), 0.5), c10::Error);
  EXPECT_THROW(nms(torch::zeros({3, 4}), torch::zeros({2}), 0.5), c10::Error);
}

// nms_vote against the rule written out directly: IoUs in double, every pair, then the scan.
TEST(Nms, VotingMatchesTheRuleOnRandomBoxes) {
  torch::manual_seed(3);
  for (int trial = 0; trial < 20; ++trial) {
    // 20 objects with 3 jittered boxes each: the piles that voting averages.
    const int64_t n = 60;
    auto xy = torch::rand({n / 3, 2}) * 40;
    auto wh = torch::rand({n / 3, 2}) * 12 + 4;
    auto boxes = torch::cat({xy, xy + wh}, 1).repeat({3, 1}) + torch::randn({n, 4}) * 0.7;
    auto scores = torch::rand({n});
    auto labels = torch::randint(0, 2, {n}, torch::kLong);
    const double nms_iou = 0.3 + 0.02 * trial, vote_iou = 0.25 + 0.03 * trial;
    auto got = nms_vote(boxes, scores, nms_iou, vote_iou, labels);
    ASSERT_TRUE(torch::equal(got.keep, nms(boxes, scores, nms_iou, labels)));

    auto B = boxes.accessor<float, 2>();
    auto S = scores.accessor<float, 1>();
    auto L = labels.accessor<int64_t, 1>();
    auto iou = [&](int64_t i, int64_t j) {
      const double iw = std::min(B[i][2], B[j][2]) - std::max(B[i][0], B[j][0]);
      const double ih = std::min(B[i][3], B[j][3]) - std::max(B[i][1], B[j][1]);
      if (iw <= 0 || ih <= 0) return 0.0;
      const double a = (B[i][2] - B[i][0]) * (B[i][3] - B[i][1]);
      const double c = (B[j][2] - B[j][0]) * (B[j][3] - B[j][1]);
      return iw * ih / (a + c - iw * ih);
    };
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return S[i] > S[j]; });
    std::vector<bool> gone(n, false), voted(n, false);
    std::vector<std::array<double, 4>> expect;
    for (int64_t oi = 0; oi < n; ++oi) {
      const int64_t i = order[oi];
      if (gone[i]) continue;
      std::array<double, 4> sum{};
      double w = S[i];
      for (int k = 0; k < 4; ++k) sum[k] = S[i] * B[i][k];
      for (int64_t oj = oi + 1; oj < n; ++oj) {
        const int64_t j = order[oj];
        if (gone[j] || L[j] != L[i]) continue;
        const double o = iou(i, j);
        if (o > nms_iou) gone[j] = true;
        if (!voted[j] && o >= vote_iou) {
          voted[j] = true;
          for (int k = 0; k < 4; ++k) sum[k] += S[j] * B[j][k];
          w += S[j];
        }
      }
      for (auto& v : sum) v /= w;
      expect.push_back(sum);
    }
    ASSERT_EQ(got.boxes.size(0), static_cast<int64_t>(expect.size()));
    int moved = 0;
    for (size_t r = 0; r < expect.size(); ++r) {
      const int64_t i = got.keep[r].item<int64_t>();
      for (int k = 0; k < 4; ++k) {
        EXPECT_NEAR(got.boxes[r][k].item<double>(), expect[r][k], 1e-4) << trial << " " << r;
        moved += std::abs(expect[r][k] - B[i][k]) > 1e-3;
      }
    }
    EXPECT_GT(moved, 0) << "trial " << trial << ": no kept box had a voter";
  }
  auto none = nms_vote(torch::zeros({0, 4}), torch::zeros({0}), 0.5, 0.6);
  EXPECT_EQ(none.keep.numel(), 0);
  EXPECT_EQ(none.boxes.size(0), 0);
}

// One level of outputs with hand-placed scores: stride 8, 4x4 locations, 2 classes.
HeadOutput one_level(float fill_logit) {
  HeadOutput out;
  out.cls_logits.push_back(torch::full({1, 2, 4, 4}, fill_logit));
  out.obj_logits.push_back(torch::zeros({1, 1, 4, 4}));      // omega = 0.5
  out.distances.push_back(torch::full({1, 4, 4, 4}, 4.0f));  // 8x8 boxes about each point
  return out;
}

TEST(Postprocess, ScoreIsProductThresholdNmsRescaleClip) {
  auto out = one_level(-10.f);  // pi ~ 0: nothing passes
  // Location (u=1, v=2), class 1: pi = 0.8 -> score = 0.4.
  out.cls_logits[0][0][1][2][1] = std::log(0.8f / 0.2f);
  // Location (u=2, v=2), class 1, overlapping the first (IoU 1/3 < 0.6): kept.
  out.cls_logits[0][0][1][2][2] = std::log(0.6f / 0.4f);
  // Location (u=3, v=0), class 0: pi = 0.09 -> score 0.045 < 0.05: dropped.
  out.cls_logits[0][0][0][0][3] = std::log(0.09f / 0.91f);
  PostprocessConfig cfg;
  ImageGeometry geo{/*orig_width=*/10, /*orig_height=*/40, /*scale_x=*/2.0, /*scale_y=*/0.5};
  auto det = postprocess(out, 0, {8}, cfg, geo);
  ASSERT_EQ(det.scores.numel(), 2);
  EXPECT_NEAR(det.scores[0].item<float>(), 0.4f, 1e-6);
  EXPECT_NEAR(det.scores[1].item<float>(), 0.3f, 1e-6);
  EXPECT_EQ(det.labels[0].item<int64_t>(), 1);
  // Box of (8, 16) +- 4 in input pixels -> x / 2, y / 0.5, clipped to 10 x 40.
  EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({2.f, 24.f, 6.f, 40.f})));
  EXPECT_TRUE(torch::allclose(det.boxes[1], torch::tensor({6.f, 24.f, 10.f, 40.f})));
}

TEST(Postprocess, TopKIsCappedAtLocationsAndMaxDetections) {
  // All 16 locations x 2 classes score 0.5*0.9; top-k = min(1000, H*W) = 16 candidates.
  auto out = one_level(std::log(9.f));
  // Spread boxes so NMS keeps everything: tiny boxes about each point.
  out.distances[0].fill_(1.0f);
  PostprocessConfig cfg;
  ImageGeometry geo{1000, 1000, 1.0, 1.0};
  auto det = postprocess(out, 0, {8}, cfg, geo);
  EXPECT_EQ(det.scores.numel(), 16);  // not 32: the cap counts locations
  cfg.max_detections = 5;
  det = postprocess(out, 0, {8}, cfg, geo);
  EXPECT_EQ(det.scores.numel(), 5);
}

TEST(Postprocess, DropsBoxesEmptyAfterClipping) {
  auto out = one_level(-10.f);
  out.cls_logits[0][0][0][3][3] = 5.f;  // point (24, 24)
  ImageGeometry geo{/*orig_width=*/20, /*orig_height=*/20, 1.0, 1.0};
  out.distances[0].fill_(3.0f);  // box 21..27: entirely right of the 20-px frame
  auto det = postprocess(out, 0, {8}, PostprocessConfig{}, geo);
  EXPECT_EQ(det.scores.numel(), 0);
}

// head.min_distance < 0: a box whose sides cross is no box; it is dropped before NMS, so it
// neither suppresses nor takes a place, in both orders.
TEST(Postprocess, DropsBoxesWhoseSidesCross) {
  for (const std::string order : {"cvpods", "mmdet"}) {
    auto out = one_level(-10.f);
    out.cls_logits[0][0][0][1][1] = 5.f;  // point (8, 8): the best score, crossed box
    out.distances[0][0][0][1][1] = -3.f;  // l + r = -3 + 2 < 0
    out.distances[0][0][2][1][1] = 2.f;
    out.cls_logits[0][0][0][1][2] = 4.f;  // point (16, 8): a box 8x8 about it, kept
    PostprocessConfig cfg;
    cfg.order = order;
    cfg.max_detections = 1;
    auto det = postprocess(out, 0, {8}, cfg, ImageGeometry{64, 64, 1.0, 1.0});
    ASSERT_EQ(det.scores.numel(), 1) << order;
    EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({12.f, 4.f, 20.f, 12.f}))) << order;
    // A box that misses its point without crossing is a box: l = -1, r = 3 -> [9, 11].
    out.distances[0][0][0][1][1] = -1.f;
    out.distances[0][0][2][1][1] = 3.f;
    det = postprocess(out, 0, {8}, cfg, ImageGeometry{64, 64, 1.0, 1.0});
    ASSERT_EQ(det.scores.numel(), 1) << order;
    EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({9.f, 4.f, 11.f, 12.f}))) << order;
  }
}

// postprocess.vote_iou: the kept box becomes the score-weighted mean of itself and the
// lower-scored candidates of its class that overlap it by at least vote_iou, suppressed ones
// included; scores stay.
TEST(Postprocess, BoxVotingAveragesTheSameClassCandidatesAboutAKeptBox) {
  for (const std::string order : {"cvpods", "mmdet"}) {
    auto out = one_level(-10.f);
    out.cls_logits[0][0][1][2][1] = std::log(0.8f / 0.2f);  // point (8, 16), class 1: 0.4
    out.cls_logits[0][0][1][2][2] = std::log(0.6f / 0.4f);  // point (16, 16), class 1: 0.3
    out.cls_logits[0][0][0][2][2] = std::log(0.9f / 0.1f);  // point (16, 16), class 0: 0.45
    // Point (16, 16) boxes [6, 12, 14, 20] (l 10, r -2): IoU 48 / 80 = 0.6 with [4, 12, 12, 20].
    out.distances[0][0][0][2][2] = 10.f;
    out.distances[0][0][2][2][2] = -2.f;
    PostprocessConfig cfg;
    cfg.order = order;
    cfg.nms_iou = 0.5f;  // the class-1 box at (16, 16) is suppressed
    const ImageGeometry geo{64, 64, 1.0, 1.0};
    auto plain = postprocess(out, 0, {8}, cfg, geo);
    cfg.vote_iou = 0.55f;
    auto voted = postprocess(out, 0, {8}, cfg, geo);
    cfg.vote_iou = 0.65f;  // above the pair's IoU: nothing to average
    auto strict = postprocess(out, 0, {8}, cfg, geo);
    for (const auto* det : {&plain, &voted, &strict}) {
      ASSERT_EQ(det->scores.numel(), 2) << order;
      EXPECT_NEAR(det->scores[0].item<float>(), 0.45f, 1e-6) << order;
      EXPECT_NEAR(det->scores[1].item<float>(), 0.4f, 1e-6) << order;
      // The class-0 box has no class-0 neighbour: never moved by the class-1 candidates.
      EXPECT_TRUE(torch::allclose(det->boxes[0], torch::tensor({6.f, 12.f, 14.f, 20.f}))) << order;
    }
    EXPECT_TRUE(torch::allclose(plain.boxes[1], torch::tensor({4.f, 12.f, 12.f, 20.f}))) << order;
    EXPECT_TRUE(torch::allclose(strict.boxes[1], plain.boxes[1])) << order;
    // (0.4 * [4, 12, 12, 20] + 0.3 * [6, 12, 14, 20]) / 0.7
    EXPECT_TRUE(torch::allclose(voted.boxes[1], torch::tensor({34.f / 7, 12.f, 90.f / 7, 20.f}),
                                1e-5, 1e-4))
        << order << ": " << voted.boxes[1];
  }
}

// MMDetection 2.12's order (postprocess.order = "mmdet"), each difference from the authors' order
// checked against hand-computed values.
TEST(PostprocessMmdet, ThresholdOnPiAloneThenTimesOmega) {
  auto out = one_level(-10.f);
  // pi = 0.09, omega = 0.5: pi passes 0.05 although pi * omega = 0.045 does not.
  out.cls_logits[0][0][0][0][3] = std::log(0.09f / 0.91f);
  // pi = 0.04, omega ~ 1: pi fails, so it is dropped although omega is high.
  out.cls_logits[0][0][1][1][1] = std::log(0.04f / 0.96f);
  out.obj_logits[0][0][0][1][1] = 20.f;
  PostprocessConfig cfg;
  ImageGeometry geo{1000, 1000, 1.0, 1.0};
  EXPECT_EQ(postprocess(out, 0, {8}, cfg, geo).scores.numel(), 0);  // cvpods: 0.045 < 0.05
  cfg.order = "mmdet";
  auto det = postprocess(out, 0, {8}, cfg, geo);
  ASSERT_EQ(det.scores.numel(), 1);
  EXPECT_NEAR(det.scores[0].item<float>(), 0.045f, 1e-6);
  EXPECT_EQ(det.labels[0].item<int64_t>(), 0);
  EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({20.f, -4.f, 28.f, 4.f}).clamp_min(0)));
}

TEST(PostprocessMmdet, TopKCountsLocationsWithAllTheirClasses) {
  // Every location: class 0 pi = 0.9, class 1 pi = 0.6 (both pass); omega = 0.5. Location 5
  // ranks first and location 10 second by their best class's pi * omega.
  auto out = one_level(0.f);
  out.cls_logits[0].select(1, 0).fill_(std::log(9.f));
  out.cls_logits[0].select(1, 1).fill_(std::log(1.5f));
  out.obj_logits[0][0][0][1][1] = 1.f;   // location 5 = (u=1, v=1)
  out.obj_logits[0][0][0][2][2] = 0.5f;  // location 10 = (u=2, v=2)
  out.distances[0].fill_(1.0f);          // tiny boxes: NMS keeps both classes' boxes anyway
  PostprocessConfig cfg;
  cfg.topk_per_level = 2;
  ImageGeometry geo{1000, 1000, 1.0, 1.0};
  EXPECT_EQ(postprocess(out, 0, {8}, cfg, geo).scores.numel(), 2);  // cvpods: 2 pairs
  cfg.order = "mmdet";
  auto det = postprocess(out, 0, {8}, cfg, geo);
  ASSERT_EQ(det.scores.numel(), 4);  // 2 locations x 2 classes
  const float o5 = 1.f / (1.f + std::exp(-1.f)), o10 = 1.f / (1.f + std::exp(-0.5f));
  const std::vector<float> want = {0.9f * o5, 0.9f * o10, 0.6f * o5, 0.6f * o10};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(det.scores[i].item<float>(), want[i], 1e-6) << i;
  EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({7.f, 7.f, 9.f, 9.f})));
  EXPECT_TRUE(torch::allclose(det.boxes[1], torch::tensor({15.f, 15.f, 17.f, 17.f})));
}

TEST(PostprocessMmdet, ClipsToTheResizedImageBeforeNmsAndKeepsEmptyBoxes) {
  // A at point (8, 8): x 0..40; B at (16, 8): x 6..20; both y 4..12. The resized image is 20
  // wide (10 px at scale 2). Unclipped IoU = 14/40 = 0.35, so the authors' order keeps both;
  // clipped to 20, IoU = 14/20 = 0.7 > 0.6, so MMDetection's suppresses B.
  auto out = one_level(-10.f);
  out.cls_logits[0][0][0][1][1] = std::log(9.f);  // A: pi 0.9
  out.cls_logits[0][0][0][1][2] = std::log(4.f);  // B: pi 0.8
  out.distances[0][0].select(1, 1).select(1, 1).copy_(torch::tensor({8.f, 4.f, 32.f, 4.f}));
  out.distances[0][0].select(1, 1).select(1, 2).copy_(torch::tensor({10.f, 4.f, 4.f, 4.f}));
  PostprocessConfig cfg;
  ImageGeometry geo{/*orig_width=*/10, /*orig_height=*/100, /*scale_x=*/2.0, /*scale_y=*/1.0};
  EXPECT_EQ(postprocess(out, 0, {8}, cfg, geo).scores.numel(), 2);
  cfg.order = "mmdet";
  auto det = postprocess(out, 0, {8}, cfg, geo);
  ASSERT_EQ(det.scores.numel(), 1);
  EXPECT_NEAR(det.scores[0].item<float>(), 0.45f, 1e-6);
  EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({0.f, 4.f, 10.f, 12.f})));  // / 2 in x
  // A box entirely right of the image clips to zero width and is kept (mmdet has no filter).
  out = one_level(-10.f);
  out.cls_logits[0][0][0][3][3] = 5.f;  // point (24, 24)
  out.distances[0].fill_(3.0f);         // x 21..27: right of the 20-px frame
  det = postprocess(out, 0, {8}, cfg, ImageGeometry{20, 100, 1.0, 1.0});
  ASSERT_EQ(det.scores.numel(), 1);
  EXPECT_TRUE(torch::allclose(det.boxes[0], torch::tensor({20.f, 21.f, 20.f, 27.f})));
}

}  // namespace
}  // namespace autoassign
