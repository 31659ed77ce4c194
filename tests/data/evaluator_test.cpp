// SPDX-License-Identifier: MIT
// Both evaluators on hand-made cases whose AP is worked out by hand here, and the WIDER
// ground truth read from the official .mat files against the official txt annotations.
#include "autoassign/data/evaluator.h"

#include <algorithm>
#include <cstdlib>

#include <gtest/gtest.h>

#include "autoassign/data/dataset.h"
#include "fixtures.h"

namespace autoassign {
namespace {

// One class, images given as lists of gt boxes (x1, y1, x2, y2, crowd).
Dataset coco_gt(const std::vector<std::vector<std::array<float, 5>>>& images) {
  Dataset ds;
  ds.name = "hand";
  ds.class_names = {"thing"};
  for (size_t i = 0; i < images.size(); ++i) {
    Sample s;
    s.image_id = static_cast<int64_t>(i) + 100;
    for (const auto& b : images[i]) {
      Annotation a;
      a.x1 = b[0];
      a.y1 = b[1];
      a.x2 = b[2];
      a.y2 = b[3];
      a.ignore = b[4] != 0;
      s.objects.push_back(a);
    }
    ds.samples.push_back(s);
  }
  return ds;
}

CocoDetection det(int64_t image, float x1, float y1, float x2, float y2, float score) {
  return {image + 100, 0, x1, y1, x2, y2, score};
}

TEST(CocoEval, PerfectPredictionsGiveOne) {
  auto gt = coco_gt({{{0, 0, 50, 50, 0}, {60, 60, 200, 220, 0}}, {{10, 10, 20, 20, 0}}});
  auto r = evaluate_coco(
      gt, {det(0, 0, 0, 50, 50, .9f), det(0, 60, 60, 200, 220, .8f), det(1, 10, 10, 20, 20, .7f)});
  EXPECT_DOUBLE_EQ(r.ap, 1.0);
  EXPECT_DOUBLE_EQ(r.ap50, 1.0);
  EXPECT_DOUBLE_EQ(r.ar100, 1.0);
  EXPECT_DOUBLE_EQ(r.ap_small, 1.0);   // 10x10 (100 < 32^2)
  EXPECT_DOUBLE_EQ(r.ap_medium, 1.0);  // 50x50 = 2500
  EXPECT_DOUBLE_EQ(r.ap_large, 1.0);   // 140x160
}

TEST(CocoEval, OneMissHalvesRecall) {
  // Two gts, one found: precision 1 up to recall 0.5, so 51 of the 101 recall points.
  auto gt = coco_gt({{{0, 0, 50, 50, 0}, {100, 100, 150, 150, 0}}});
  auto r = evaluate_coco(gt, {det(0, 0, 0, 50, 50, .9f)});
  EXPECT_NEAR(r.ap, 51.0 / 101.0, 1e-12);
  EXPECT_NEAR(r.ar100, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(r.ap_large, -1.0);  // no gt in that range
}

TEST(CocoEval, DuplicateIsAFalsePositive) {
  // gt [0,0,10,10]; A (0.9) has IoU 0.72, B (0.8) IoU 1. For IoU thresholds 0.50..0.70 A is
  // the TP and B a duplicate after it (AP 1); for 0.75..0.95 A is a FP ranked first and B the
  // TP at precision 1/2 (AP 0.5). Mean over the ten thresholds: 0.75.
  auto gt = coco_gt({{{0, 0, 10, 10, 0}}});
  auto r = evaluate_coco(gt, {det(0, 0, 0, 10, 7.2f, .9f), det(0, 0, 0, 10, 10, .8f)});
  EXPECT_NEAR(r.ap, 0.75, 1e-12);
  EXPECT_NEAR(r.ap50, 1.0, 1e-12);
  EXPECT_NEAR(r.ap75, 0.5, 1e-12);
}

TEST(CocoEval, CrowdMatchIsIgnored) {
  // The best-scored detection lies inside a crowd region: matched to it and ignored, so the
  // regular gt found next gives AP 1. Counted as a false positive it would give 0.5.
  auto gt = coco_gt({{{0, 0, 40, 40, 0}, {100, 100, 300, 300, 1}}});
  auto r = evaluate_coco(gt, {det(0, 120, 120, 160, 160, .95f), det(0, 0, 0, 40, 40, .5f)});
  EXPECT_DOUBLE_EQ(r.ap, 1.0);
}

TEST(CocoEval, ScoreOrderingAcrossImages) {
  // Ranked: FP (0.9, image 1), TP (0.5), TP (0.3): precision 1/2 at recall 1/2 and 2/3 at
  // recall 1; the envelope is 2/3 everywhere, so AP = 2/3.
  auto gt = coco_gt({{{0, 0, 40, 40, 0}}, {{0, 0, 40, 40, 0}}});
  auto r = evaluate_coco(
      gt, {det(0, 0, 0, 40, 40, .3f), det(1, 200, 200, 240, 240, .9f), det(1, 0, 0, 40, 40, .5f)});
  EXPECT_NEAR(r.ap, 2.0 / 3.0, 1e-12);
}

TEST(CocoEval, AreaRangesUseTheAnnotatedArea) {
  // A 40x40 box (1600 px, "medium" by its box) whose annotated (segment) area is 900:
  // pycocotools ranks it small.
  auto gt = coco_gt({{{0, 0, 40, 40, 0}}});
  gt.samples[0].objects[0].area = 900;
  auto r = evaluate_coco(gt, {det(0, 0, 0, 40, 40, .9f)});
  EXPECT_DOUBLE_EQ(r.ap_small, 1.0);
  EXPECT_DOUBLE_EQ(r.ap_medium, -1.0);
}

TEST(CocoEval, EqualScoresRankInImageIdOrder) {
  // Samples listed as ids 101 then 100. Equal scores: pycocotools ranks image 100's FP before
  // image 101's TP (images by sorted id, then a stable sort), so precision is 1/2 at recall 1
  // and AP = 0.5; the listed order would give the TP first and AP 1.
  auto gt = coco_gt({{{0, 0, 40, 40, 0}}, {}});
  gt.samples[0].image_id = 101;
  gt.samples[1].image_id = 100;
  auto r = evaluate_coco(gt, {{101, 0, 0, 0, 40, 40, .5f}, {100, 0, 0, 0, 40, 40, .5f}});
  EXPECT_NEAR(r.ap, 0.5, 1e-12);
}

TEST(CocoEval, NoDetections) {
  auto gt = coco_gt({{{0, 0, 40, 40, 0}}});
  EXPECT_DOUBLE_EQ(evaluate_coco(gt, {}).ap, 0.0);
}

// One event, images given as (x, y, w, h) faces with the same keep list for all settings
// unless `keep` says otherwise.
WiderGroundTruth wider_gt(const std::vector<std::array<double, 4>>& faces,
                          std::array<std::vector<int>, 3> keep) {
  WiderGroundTruth gt;
  auto& img = gt.events["0--Event"]["img"];
  img.boxes = faces;
  img.keep = keep;
  return gt;
}

WiderPredictions wider_pred(const std::vector<std::array<double, 5>>& boxes) {
  WiderPredictions p;
  p[{"0--Event", "img"}] = boxes;
  return p;
}

TEST(WiderEval, PerfectGivesOne) {
  auto gt = wider_gt({{10, 10, 30, 30}, {100, 50, 20, 25}}, {{{1, 2}, {1, 2}, {1, 2}}});
  auto r = evaluate_wider(gt, wider_pred({{10, 10, 30, 30, .9}, {100, 50, 20, 25, .8}}));
  for (int s = 0; s < 3; ++s) {
    EXPECT_DOUBLE_EQ(r.ap[s], 1.0) << s;
    EXPECT_EQ(r.faces[s], 2);
  }
}

TEST(WiderEval, OneMissGivesHalf) {
  auto gt = wider_gt({{10, 10, 30, 30}, {100, 50, 20, 25}}, {{{1, 2}, {1, 2}, {1, 2}}});
  auto r = evaluate_wider(gt, wider_pred({{10, 10, 30, 30, .9}}));
  EXPECT_DOUBLE_EQ(r.ap[0], 0.5);
  EXPECT_DOUBLE_EQ(r.max_recall[0], 0.5);
}

TEST(WiderEval, FaceOutsideTheSettingIsIgnored) {
  // Face 2 is not in the easy keep list: a prediction on it is no proposal at all (no false
  // positive) and the face is not counted; in hard it counts.
  auto gt = wider_gt({{10, 10, 30, 30}, {100, 50, 20, 25}}, {{{1}, {1, 2}, {1, 2}}});
  auto r = evaluate_wider(gt, wider_pred({{100, 50, 20, 25, .9}, {10, 10, 30, 30, .8}}));
  EXPECT_EQ(r.faces[0], 1);
  EXPECT_DOUBLE_EQ(r.ap[0], 1.0);
  EXPECT_DOUBLE_EQ(r.ap[2], 1.0);
  // Easy, with only the ignored face predicted: nothing recalled, AP 0 and no NaN.
  auto r2 = evaluate_wider(gt, wider_pred({{100, 50, 20, 25, .9}}));
  EXPECT_DOUBLE_EQ(r2.ap[0], 0.0);
}

TEST(WiderEval, DuplicateAboveAnotherFaceCosts) {
  // Scores normalise to 1, 0.5, 0. Above 0.5: P 1, R 1/2. Down to 0.5: the duplicate makes
  // P 1/2. At 0: P 2/3, R 1. VOC AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
  auto gt = wider_gt({{10, 10, 30, 30}, {100, 50, 20, 25}}, {{{1, 2}, {1, 2}, {1, 2}}});
  auto r = evaluate_wider(
      gt, wider_pred({{10, 10, 30, 30, .9}, {11, 10, 30, 30, .8}, {100, 50, 20, 25, .7}}));
  EXPECT_NEAR(r.ap[0], 5.0 / 6.0, 1e-12);
}

TEST(WiderEval, PlusOnePixelOverlap) {
  // Boxes as x, y, w, h with the +1 convention: [0,0,9,9] (10x10 pixels) vs [5,0,14,9]:
  // inter 5x10 = 50, union 150 -> 1/3 < 0.5, a false positive; shifted by 3 the overlap is
  // 7x10 / (200 - 70) = 0.538 >= 0.5, a hit.
  auto gt = wider_gt({{0, 0, 9, 9}}, {{{1}, {1}, {1}}});
  EXPECT_DOUBLE_EQ(evaluate_wider(gt, wider_pred({{5, 0, 9, 9, .9}})).ap[0], 0.0);
  EXPECT_DOUBLE_EQ(evaluate_wider(gt, wider_pred({{3, 0, 9, 9, .9}})).ap[0], 1.0);
}

TEST(WiderEval, OfficialGroundTruthMatchesTheTxtAnnotations) {
  const std::string data = testing::shared_data_dir();
  ASSERT_FALSE(data.empty());
  const std::string root = std::string(data) + "/widerface";
  auto gt = load_wider_ground_truth(root + "/eval_tools/ground_truth");
  size_t images = 0;
  for (const auto& [e, imgs] : gt.events) images += imgs.size();
  EXPECT_EQ(images, 3226u);  // the whole official val set
  EXPECT_EQ(gt.events.size(), 61u);
  // Every val image present here: the .mat boxes are the txt file's boxes.
  auto ds = load_widerface(root, "val");
  ASSERT_EQ(ds.samples.size(), 194u);
  for (const auto& s : ds.samples) {
    const auto slash = s.key.find('/');
    const auto& img = gt.events.at(s.key.substr(0, slash)).at(s.key.substr(slash + 1));
    // The txt loader skips zero-size boxes (e.g. the "1 face, all zeros" entries); the .mat
    // keeps them but no setting's keep list names them.
    std::vector<std::array<double, 4>> sized;
    for (size_t i = 0; i < img.boxes.size(); ++i) {
      const auto& b = img.boxes[i];
      if (b[2] > 0 && b[3] > 0) {
        sized.push_back(b);
        continue;
      }
      for (const auto& keep : img.keep) {
        EXPECT_EQ(std::count(keep.begin(), keep.end(), static_cast<int>(i) + 1), 0) << s.key;
      }
    }
    ASSERT_EQ(sized.size(), s.objects.size()) << s.key;
    for (size_t i = 0; i < s.objects.size(); ++i) {
      EXPECT_EQ(sized[i][0], s.objects[i].x1) << s.key;
      EXPECT_EQ(sized[i][1], s.objects[i].y1) << s.key;
      EXPECT_EQ(sized[i][2], s.objects[i].x2 - s.objects[i].x1) << s.key;
      EXPECT_EQ(sized[i][3], s.objects[i].y2 - s.objects[i].y1) << s.key;
    }
    for (const auto& keep : img.keep) {
      for (int k : keep) {
        EXPECT_GE(k, 1);
        EXPECT_LE(static_cast<size_t>(k), img.boxes.size());
      }
    }
  }
}

}  // namespace
}  // namespace autoassign
