// SPDX-License-Identifier: MIT
// Grid order, box coding round trip, and per-level shapes of each preset.
#include "autoassign/infer/box_coder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "autoassign/infer/modeling/model.h"
#include "autoassign/infer/preprocess.h"
#include "fixtures.h"
#include "outputs.h"

namespace autoassign {
namespace {

TEST(Grid, LevelsInOrderRowMajorNoOffset) {
  auto g = make_grid({{2, 3}, {1, 2}}, {8, 16});
  ASSERT_EQ(g.points.size(0), 2 * 3 + 1 * 2);
  const std::vector<std::array<float, 3>> expected = {
      {0, 0, 8}, {8, 0, 8}, {16, 0, 8}, {0, 8, 8}, {8, 8, 8}, {16, 8, 8}, {0, 0, 16}, {16, 0, 16}};
  for (size_t j = 0; j < expected.size(); ++j) {
    EXPECT_EQ(g.points[j][0].item<float>(), expected[j][0]) << j;
    EXPECT_EQ(g.points[j][1].item<float>(), expected[j][1]) << j;
    EXPECT_EQ(g.strides[j].item<float>(), expected[j][2]) << j;
  }
}

TEST(BoxCoder, EncodeDecodeRoundTrip) {
  torch::manual_seed(0);
  auto points = torch::rand({100, 2}) * 500;
  auto boxes =
      torch::cat({points - torch::rand({100, 2}) * 50, points + torch::rand({100, 2}) * 50}, 1);
  auto ltrb = encode_boxes(points, boxes);
  EXPECT_TRUE((ltrb >= 0).all().item<bool>());
  EXPECT_TRUE(torch::allclose(decode_boxes(points, ltrb), boxes, 1e-5, 1e-4));
  // Hand case: point (10, 20), box (4, 5, 30, 26) -> (6, 15, 20, 6).
  auto t = encode_boxes(torch::tensor({{10.f, 20.f}}), torch::tensor({{4.f, 5.f, 30.f, 26.f}}));
  EXPECT_TRUE(torch::equal(t, torch::tensor({{6.f, 15.f, 20.f, 6.f}})));
}

TEST(BoxCoder, GiouHandValues) {
  // Same point, pred (1,1,1,1) = 2x2 box, target (2,2,2,2) = 4x4 box around it.
  // IoU = 4/16, enclosing = target, so GIoU = 0.25.
  auto g = giou_ltrb(torch::tensor({1.f, 1.f, 1.f, 1.f}), torch::tensor({2.f, 2.f, 2.f, 2.f}));
  EXPECT_FLOAT_EQ(g.item<float>(), 0.25f);
  // Pred entirely left of the point (r = -?) is impossible; disjoint boxes from a shared
  // point cannot occur, so check a partial overlap: pred (0,1,3,1) = [x-0, x+3] x [y-1, y+1],
  // target (2,1,1,1): inter x [x, x+1] (1) * 2 = 2; union 6 + 6 - 2 = 10; enclosing
  // [x-2, x+3] x 2 = 10 -> GIoU = 0.2.
  g = giou_ltrb(torch::tensor({0.f, 1.f, 3.f, 1.f}), torch::tensor({2.f, 1.f, 1.f, 1.f}));
  EXPECT_FLOAT_EQ(g.item<float>(), 0.2f);
}

// head.min_distance < 0: a box may miss the point that predicts it, and its sides may cross.
TEST(BoxCoder, GiouOfSignedDistances) {
  // Target 3 px right of the point: ltrb (-1, 2, 4, 2) = [x+1, x+4] x [y-2, y+2]; the same
  // prediction is a perfect match.
  auto t = torch::tensor({-1.f, 2.f, 4.f, 2.f});
  EXPECT_FLOAT_EQ(giou_ltrb(t, t).item<float>(), 1.f);
  // Prediction (-2, 2, 4, 2) = [x+2, x+4]: inter 2 x 4 = 8, union 12, enclosing the target:
  // GIoU = 8/12.
  EXPECT_FLOAT_EQ(giou_ltrb(torch::tensor({-2.f, 2.f, 4.f, 2.f}), t).item<float>(), 8.f / 12.f);
  // Crossed prediction (-3, -3, 1, 1): width and height -2, no area (not (-2) x (-2) = 4).
  // Target (1, 1, 1, 1), area 4: inter 0, union 4; enclosing max(-3, 1) + max(1, 1) = 2 per
  // side, area 4: GIoU = 0 - (4 - 4) / 4 = 0 (the product of the crossed sides gave 1.5).
  EXPECT_FLOAT_EQ(
      giou_ltrb(torch::tensor({-3.f, -3.f, 1.f, 1.f}), torch::tensor({1.f, 1.f, 1.f, 1.f}))
          .item<float>(),
      0.f);
}

TEST(BoxCoder, IouHandValues) {
  auto a = torch::tensor({{0.f, 0.f, 10.f, 10.f}});
  auto b = torch::tensor({{5.f, 0.f, 15.f, 10.f}, {20.f, 20.f, 30.f, 30.f}, {3.f, 3.f, 3.f, 8.f}});
  auto iou = box_iou(a, b);
  EXPECT_FLOAT_EQ(iou[0][0].item<float>(), 50.f / 150.f);
  EXPECT_EQ(iou[0][1].item<float>(), 0.f);
  EXPECT_EQ(iou[0][2].item<float>(), 0.f);  // empty box
}

// Every preset at an input that is not a multiple of 32: the preprocessor pads to the size
// divisor, and each level has the map size the conv arithmetic gives.
}  // namespace
}  // namespace autoassign
