// SPDX-License-Identifier: MIT
// The tracker: the Kalman filter against hand-computed values, the greedy assignment on
// hand-made matrices, and ByteTrack's association rules on scripted scenes whose right ids are
// known.
#include "autoassign/core/tracker.h"

#include <gtest/gtest.h>

namespace autoassign {
namespace {

Detection det(float x1, float y1, float w, float h, float score = 0.9f, int label = 0) {
  Detection d;
  d.x1 = x1;
  d.y1 = y1;
  d.x2 = x1 + w;
  d.y2 = y1 + h;
  d.score = score;
  d.label_id = label;
  d.label = label == 0 ? "face" : "other";
  return d;
}

// Box (0, 0, 20, 40): cx 10, h 40, so the position std is 40/20 = 2 and the velocity std
// 40/160 = 0.25. Initial variances: cx (2 x 2)^2 = 16, vcx (10 x 0.25)^2 = 6.25. Predict:
// P00 = 16 + 6.25 + 2^2 = 26.25, P04 = 6.25, P44 = 6.25 + 0.25^2. Update with cx = 12
// (R00 = 2^2 = 4, S = 30.25): cx = 10 + 2 x 26.25/30.25, vcx = 2 x 6.25/30.25,
// P00 = 26.25 x 4/30.25.
TEST(BoxKalman, OneStepHandComputed) {
  BoxKalman k({0, 0, 20, 40});
  EXPECT_DOUBLE_EQ(k.covariance()[0][0], 16.0);
  EXPECT_DOUBLE_EQ(k.covariance()[4][4], 6.25);
  k.predict();
  EXPECT_DOUBLE_EQ(k.state()[0], 10.0);
  EXPECT_DOUBLE_EQ(k.covariance()[0][0], 26.25);
  EXPECT_DOUBLE_EQ(k.covariance()[0][4], 6.25);
  EXPECT_DOUBLE_EQ(k.covariance()[4][4], 6.3125);
  k.update({2, 0, 22, 40});
  EXPECT_NEAR(k.state()[0], 10 + 2 * 26.25 / 30.25, 1e-9);
  EXPECT_NEAR(k.state()[4], 2 * 6.25 / 30.25, 1e-9);
  EXPECT_NEAR(k.covariance()[0][0], 26.25 * 4 / 30.25, 1e-9);
  EXPECT_NEAR(k.state()[1], 20, 1e-9);  // cy, aspect and height were measured unchanged
  EXPECT_NEAR(k.state()[2], 0.5, 1e-9);
  EXPECT_NEAR(k.state()[3], 40, 1e-9);
  const auto b = k.box();
  EXPECT_NEAR(b[2] - b[0], 20, 1e-9);
  EXPECT_NEAR(b[3] - b[1], 40, 1e-9);
}

// A box moving 3 px right and 1 px down per frame: the filter learns the velocity, and its
// prediction one frame ahead lands on the true box.
TEST(BoxKalman, LearnsConstantVelocity) {
  BoxKalman k({0, 0, 30, 30});
  for (int f = 1; f <= 40; ++f) {
    k.predict();
    k.update({3.0 * f, 1.0 * f, 3.0 * f + 30, 1.0 * f + 30});
  }
  EXPECT_NEAR(k.state()[4], 3.0, 0.05);
  EXPECT_NEAR(k.state()[5], 1.0, 0.05);
  k.predict();
  const auto b = k.box();
  EXPECT_NEAR(b[0], 123.0, 0.5);
  EXPECT_NEAR(b[1], 41.0, 0.5);
}

TEST(Tracker, GreedyMatchTakesTheBestPairFirst) {
  // Greedy takes 0.9 first; the Hungarian optimum (0.8 + 0.85) differs: documented.
  EXPECT_EQ(greedy_match({{0.9, 0.8}, {0.85, 0.1}}, 0.2),
            (std::vector<std::pair<int, int>>{{0, 0}}));
  EXPECT_EQ(greedy_match({{0.5, 0.0}, {0.6, 0.3}}, 0.2),
            (std::vector<std::pair<int, int>>{{1, 0}}));
  EXPECT_EQ(greedy_match({{0.5, 0.4}, {0.45, 0.3}}, 0.2),
            (std::vector<std::pair<int, int>>{{0, 0}, {1, 1}}));
  EXPECT_TRUE(greedy_match({}, 0.2).empty());
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 10, 10}, {5, 0, 15, 10}), 50.0 / 150.0);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 0, 0}, {0, 0, 0, 0}), 0.0);
}

// Two faces walking apart keep their ids frame after frame.
TEST(Tracker, IdsStayWithTheirObjects) {
  Tracker t;
  for (int f = 0; f < 20; ++f) {
    auto out = t.update({det(100 - 2.f * f, 50, 40, 40), det(200 + 2.f * f, 60, 40, 40)});
    ASSERT_EQ(out.size(), 2u);
    for (const auto& o : out) EXPECT_EQ(o.id, o.box.x1 < 150 ? 1 : 2) << "frame " << f;
  }
}

// A face missed for a few frames (occluded) comes back with its id; one gone longer than
// track_buffer comes back as a new object.
TEST(Tracker, TrackBufferBridgesShortGaps) {
  TrackerOptions o;
  o.track_buffer = 5;
  Tracker t(o);
  for (int f = 0; f < 5; ++f) ASSERT_EQ(t.update({det(10.f + f, 10, 40, 40)})[0].id, 1);
  for (int f = 5; f < 9; ++f) EXPECT_TRUE(t.update({}).empty());  // 4 frames unseen
  auto back = t.update({det(19, 10, 40, 40)});
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].id, 1);
  for (int f = 0; f < 6; ++f) t.update({});  // 6 > 5 frames unseen: dropped
  EXPECT_EQ(t.live_tracks(), 0u);
  EXPECT_EQ(t.update({det(19, 10, 40, 40)})[0].id, 2);
}

// ByteTrack's point: a low-score box (an occluded face) continues its track, but never starts
// one; it is then not shown at all.
TEST(Tracker, LowScoreBoxesOnlyContinueTracks) {
  Tracker t;  // high 0.5, low 0.1
  EXPECT_EQ(t.update({det(10, 10, 40, 40, 0.9f)})[0].id, 1);
  auto cont = t.update({det(11, 10, 40, 40, 0.3f), det(300, 300, 40, 40, 0.3f)});
  ASSERT_EQ(cont.size(), 1u);  // the stray low box is dropped
  EXPECT_EQ(cont[0].id, 1);
  EXPECT_FLOAT_EQ(cont[0].box.score, 0.3f);
  EXPECT_TRUE(t.update({det(300, 300, 40, 40, 0.05f)}).empty());  // below low: ignored
  EXPECT_EQ(t.update({det(300, 300, 40, 40, 0.6f)})[0].id, 2);    // high: a new track
}

// Frames without inference: the tracks move on their predicted velocity.
TEST(Tracker, PredictMovesTracksBetweenInferences) {
  Tracker t;
  for (int f = 0; f < 10; ++f) t.update({det(10.f + 4 * f, 20, 40, 40)});
  auto p = t.predict();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(p[0].predicted);
  EXPECT_EQ(p[0].id, 1);
  EXPECT_NEAR(p[0].box.x1, 50, 1.0);  // 10 + 4 x 10
  auto p2 = t.predict();
  EXPECT_NEAR(p2[0].box.x1, 54, 1.0);
  // The next inferred frame matches the predicted box.
  EXPECT_EQ(t.update({det(58, 20, 40, 40)})[0].id, 1);
}

// A looser second box around a tracked face (IoU 0.6 with it, let through by NMS at 0.6) is a
// duplicate: no new track, not shown; a later frame with only the loose box keeps the id.
TEST(Tracker, DuplicateBoxesStartNoTrack) {
  Tracker t;
  EXPECT_EQ(t.update({det(90, 90, 94, 128)})[0].id, 1);
  auto out = t.update({det(89, 90, 93, 128), det(59, 64, 125, 157, 0.72f)});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 1);
  EXPECT_EQ(t.live_tracks(), 1u);
  out = t.update({det(72, 71, 107, 146, 0.73f)});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 1);
  // A tight box nested in the tracked loose one (IoU 0.47, but all of it inside): no new track.
  Tracker u;
  EXPECT_EQ(u.update({det(55, 49, 130, 172)})[0].id, 1);
  out = u.update({det(55, 49, 130, 172), det(81, 97, 92, 115, 0.6f)});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(u.live_tracks(), 1u);
}

TEST(Tracker, LabelsNeverMatchAcrossClasses) {
  Tracker t;
  EXPECT_EQ(t.update({det(10, 10, 40, 40, 0.9f, 0)})[0].id, 1);
  EXPECT_EQ(t.update({det(10, 10, 40, 40, 0.9f, 1)})[0].id, 2);
}

TEST(Tracker, ResetAndOptions) {
  Tracker t;
  t.update({det(10, 10, 40, 40)});
  t.reset();
  EXPECT_EQ(t.live_tracks(), 0u);
  EXPECT_EQ(t.update({det(10, 10, 40, 40)})[0].id, 1);
  TrackerOptions o;
  o.low_threshold = 0.6;
  EXPECT_THROW(Tracker{o}, std::invalid_argument);
  o = {};
  o.match_iou = 0;
  EXPECT_THROW(Tracker{o}, std::invalid_argument);
  o = {};
  o.track_buffer = -1;
  EXPECT_THROW(Tracker{o}, std::invalid_argument);
}

}  // namespace
}  // namespace autoassign
