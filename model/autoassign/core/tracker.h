// SPDX-License-Identifier: MIT
// Multi-object tracking by detection in the manner of ByteTrack (Zhang et al., ECCV 2022):
// every track has a constant-velocity Kalman filter on its box (centre, aspect ratio, height:
// SORT / DeepSORT's state and noise model); each frame, tracks are matched first to the
// high-score detections, then the tracks still unmatched to the low-score ones (which is how
// ByteTrack keeps occluded, blurred objects), on IoU with the predicted boxes. Assignment is
// greedy: the pair of highest IoU first, then the next among the rest (for the few objects of
// a camera frame it agrees with the Hungarian optimum except in contrived ties). A track that
// finds no detection is kept, predicted, for track_buffer frames; only an unmatched high-score
// detection starts a new track (new id), unless it duplicates a box kept this frame (IoU >= 0.5
// with it, or 80% inside it). Torch-free and
// GStreamer-free: the element autoassigntrack is a thin shell over this.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "autoassign/core/types.h"

namespace autoassign {

/// Constant-velocity Kalman filter on a box, state (cx, cy, a, h, vcx, vcy, va, vh) with a =
/// w / h; the process and measurement noise scale with the box height (DeepSORT's weights:
/// 1/20 of h for positions, 1/160 for velocities).
class BoxKalman {
 public:
  using State = std::array<double, 8>;
  using Cov = std::array<std::array<double, 8>, 8>;

  /// Starts at a measured box (x1, y1, x2, y2) with zero velocity.
  explicit BoxKalman(const std::array<double, 4>& box);
  /// One frame ahead: x <- F x, P <- F P F' + Q.
  void predict();
  /// Corrects with a measured box: the standard Kalman update.
  void update(const std::array<double, 4>& box);
  /// The current estimate as (x1, y1, x2, y2).
  std::array<double, 4> box() const;
  const State& state() const { return x_; }
  const Cov& covariance() const { return p_; }

  static constexpr double kStdPosition = 1.0 / 20;
  static constexpr double kStdVelocity = 1.0 / 160;

 private:
  State x_{};
  Cov p_{};
};

struct TrackerOptions {
  /// Frames a track without detections is kept (predicted) before it is dropped.
  int track_buffer = 30;
  /// Least IoU between a predicted track box and a high-score detection for a match.
  double match_iou = 0.2;
  /// Detections at or above this are high-score: they match first and may start tracks.
  /// Equal to autoassigndetect's default threshold, so its boxes can start tracks.
  double high_threshold = 0.5;
  /// Detections in [low, high) only continue existing tracks (ByteTrack's second match, at
  /// IoU >= 0.5); below low they are ignored. Set the detector's threshold this low to use it.
  double low_threshold = 0.1;
  /// Throws std::invalid_argument naming the field.
  void validate() const;
};

/// One tracked object in a frame's output.
struct TrackedObject {
  int64_t id = 0;
  Detection box;           ///< matched: the detection; predicted: the Kalman box, last score
  bool predicted = false;  ///< no detection this frame (coasting on the filter)
};

class Tracker {
 public:
  /// An unmatched high-score box overlapping a box kept this frame at least this much is a
  /// duplicate of that object (dropped), not a new one.
  static constexpr double kDuplicateIou = 0.5;
  /// ... or lying this much inside it (intersection over its own area): a tight box nested in a
  /// loose box around the same face.
  static constexpr double kDuplicateInside = 0.8;

  explicit Tracker(TrackerOptions options = {});
  /// A frame whose detector ran: predict, associate, update. Returns the objects to show:
  /// every matched detection with its track's id, and every new track. Tracks that found no
  /// detection this frame are not returned (they coast until track_buffer runs out), and
  /// neither are low-score detections that matched no track.
  std::vector<TrackedObject> update(const std::vector<Detection>& detections);
  /// A frame the detector skipped: every live track one frame ahead, returned at its
  /// predicted box (tracks seen on the last inferred frame only).
  std::vector<TrackedObject> predict();
  /// Forget all tracks; ids start again from 1.
  void reset();
  size_t live_tracks() const { return tracks_.size(); }

 private:
  struct Track {
    int64_t id;
    BoxKalman filter;
    Detection last;       // last matched detection (label, score)
    int lost_frames = 0;  // frames since it was last shown; dropped past track_buffer
    bool shown = true;    // matched on the last inferred frame
  };
  // Forgets the tracks unseen for more than track_buffer frames.
  void drop_lost();
  TrackerOptions options_;
  std::vector<Track> tracks_;
  int64_t next_id_ = 1;
};

/// IoU of two (x1, y1, x2, y2) boxes; 0 for empty ones.
double box_iou(const std::array<double, 4>& a, const std::array<double, 4>& b);

/// Greedy assignment on an IoU matrix (rows x cols): repeatedly the remaining pair of highest
/// IoU at or above min_iou. Returns (row, col) pairs.
std::vector<std::pair<int, int>> greedy_match(const std::vector<std::vector<double>>& iou,
                                              double min_iou);

}  // namespace autoassign
