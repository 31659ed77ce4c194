// SPDX-License-Identifier: MIT
#include "autoassign/core/tracker.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace autoassign {
namespace {

using Box = std::array<double, 4>;

Box box_of(const Detection& d) { return {d.x1, d.y1, d.x2, d.y2}; }

// (x1, y1, x2, y2) -> (cx, cy, a, h). A degenerate box keeps a tiny positive size so that the
// noise model (proportional to h) never reaches zero.
std::array<double, 4> measure(const Box& b) {
  const double w = std::max(b[2] - b[0], 1e-3), h = std::max(b[3] - b[1], 1e-3);
  return {(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h};
}

// Inverse of a symmetric positive-definite 4x4 matrix by Gauss-Jordan with partial pivoting.
std::array<std::array<double, 4>, 4> inverse4(std::array<std::array<double, 4>, 4> m) {
  std::array<std::array<double, 4>, 4> inv{};
  for (int i = 0; i < 4; ++i) inv[i][i] = 1;
  for (int c = 0; c < 4; ++c) {
    int pivot = c;
    for (int r = c + 1; r < 4; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    std::swap(m[c], m[pivot]);
    std::swap(inv[c], inv[pivot]);
    const double d = m[c][c];
    for (int k = 0; k < 4; ++k) {
      m[c][k] /= d;
      inv[c][k] /= d;
    }
    for (int r = 0; r < 4; ++r) {
      if (r == c) continue;
      const double f = m[r][c];
      for (int k = 0; k < 4; ++k) {
        m[r][k] -= f * m[c][k];
        inv[r][k] -= f * inv[c][k];
      }
    }
  }
  return inv;
}

}  // namespace

BoxKalman::BoxKalman(const Box& box) {
  const auto z = measure(box);
  const double h = z[3];
  const double std[8] = {2 * kStdPosition * h,  2 * kStdPosition * h,  1e-2, 2 * kStdPosition * h,
                         10 * kStdVelocity * h, 10 * kStdVelocity * h, 1e-5, 10 * kStdVelocity * h};
  for (int i = 0; i < 4; ++i) x_[i] = z[i];
  for (int i = 0; i < 8; ++i) p_[i][i] = std[i] * std[i];
}

void BoxKalman::predict() {
  const double h = x_[3];
  const double q[8] = {kStdPosition * h, kStdPosition * h, 1e-2, kStdPosition * h,
                       kStdVelocity * h, kStdVelocity * h, 1e-5, kStdVelocity * h};
  // F = [[I, I], [0, I]]: position += velocity (one frame).
  for (int i = 0; i < 4; ++i) x_[i] += x_[i + 4];
  Cov fp{};  // F P
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 8; ++c) fp[r][c] = p_[r][c] + (r < 4 ? p_[r + 4][c] : 0.0);
  }
  for (int r = 0; r < 8; ++r) {  // (F P) F'
    for (int c = 0; c < 8; ++c) p_[r][c] = fp[r][c] + (c < 4 ? fp[r][c + 4] : 0.0);
  }
  for (int i = 0; i < 8; ++i) p_[i][i] += q[i] * q[i];
}

void BoxKalman::update(const Box& box) {
  const auto z = measure(box);
  const double h = x_[3];
  const double r[4] = {kStdPosition * h, kStdPosition * h, 1e-1, kStdPosition * h};
  // H = [I 0]: S = P[0:4, 0:4] + R, K = P[:, 0:4] S^-1.
  std::array<std::array<double, 4>, 4> s{};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) s[i][j] = p_[i][j];
    s[i][i] += r[i] * r[i];
  }
  const auto si = inverse4(s);
  double k[8][4] = {};
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) {
      for (int m = 0; m < 4; ++m) k[i][j] += p_[i][m] * si[m][j];
    }
  }
  double y[4];
  for (int j = 0; j < 4; ++j) y[j] = z[j] - x_[j];
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) x_[i] += k[i][j] * y[j];
  }
  // P <- P - K H P (H P = the first four rows of P).
  Cov np = p_;
  for (int i = 0; i < 8; ++i) {
    for (int c = 0; c < 8; ++c) {
      for (int j = 0; j < 4; ++j) np[i][c] -= k[i][j] * p_[j][c];
    }
  }
  p_ = np;
}

Box BoxKalman::box() const {
  const double h = std::max(x_[3], 1e-3), w = std::max(x_[2], 1e-6) * h;
  return {x_[0] - w / 2, x_[1] - h / 2, x_[0] + w / 2, x_[1] + h / 2};
}

void TrackerOptions::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (track_buffer < 0 || track_buffer > 100000) bad("track-buffer must be in [0, 100000]");
  if (!(match_iou > 0 && match_iou <= 1)) bad("match-iou must be in (0, 1]");
  if (!(low_threshold >= 0 && low_threshold <= 1)) bad("low-threshold must be in [0, 1]");
  if (!(high_threshold >= low_threshold && high_threshold <= 1)) {
    bad("high-threshold must be in [low-threshold, 1]");
  }
}

double box_iou(const Box& a, const Box& b) {
  const double iw = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double ih = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = iw * ih;
  const double uni = std::max(0.0, a[2] - a[0]) * std::max(0.0, a[3] - a[1]) +
                     std::max(0.0, b[2] - b[0]) * std::max(0.0, b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::vector<std::pair<int, int>> greedy_match(const std::vector<std::vector<double>>& iou,
                                              double min_iou) {
  struct Pair {
    double iou;
    int r, c;
  };
  std::vector<Pair> pairs;
  for (size_t r = 0; r < iou.size(); ++r) {
    for (size_t c = 0; c < iou[r].size(); ++c) {
      if (iou[r][c] >= min_iou) pairs.push_back({iou[r][c], int(r), int(c)});
    }
  }
  // Highest IoU first; ties by row, then column, so the result does not depend on sort
  // stability.
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    if (a.iou != b.iou) return a.iou > b.iou;
    return a.r != b.r ? a.r < b.r : a.c < b.c;
  });
  std::vector<bool> row_used(iou.size()), col_used;
  for (const auto& row : iou) col_used.resize(std::max(col_used.size(), row.size()));
  std::vector<std::pair<int, int>> out;
  for (const auto& p : pairs) {
    if (row_used[p.r] || col_used[p.c]) continue;
    row_used[p.r] = col_used[p.c] = true;
    out.emplace_back(p.r, p.c);
  }
  return out;
}

Tracker::Tracker(TrackerOptions options) : options_(options) { options_.validate(); }

void Tracker::reset() {
  tracks_.clear();
  next_id_ = 1;
}

void Tracker::drop_lost() {
  tracks_.erase(
      std::remove_if(tracks_.begin(), tracks_.end(),
                     [&](const Track& t) { return t.lost_frames > options_.track_buffer; }),
      tracks_.end());
}

std::vector<TrackedObject> Tracker::update(const std::vector<Detection>& detections) {
  for (auto& t : tracks_) t.filter.predict();
  std::vector<int> high, low;
  for (size_t i = 0; i < detections.size(); ++i) {
    const float s = detections[i].score;
    if (s >= options_.high_threshold) {
      high.push_back(static_cast<int>(i));
    } else if (s >= options_.low_threshold) {
      low.push_back(static_cast<int>(i));
    }
  }
  std::vector<TrackedObject> out;
  std::vector<bool> matched(tracks_.size(), false);
  // Matches `candidates` (track indices) to `dets` (detection indices) at IoU >= min_iou,
  // same label only; updates the matched tracks and removes the used detections from `dets`.
  auto associate = [&](const std::vector<int>& candidates, std::vector<int>& dets, double min_iou) {
    std::vector<std::vector<double>> iou(candidates.size(), std::vector<double>(dets.size()));
    for (size_t r = 0; r < candidates.size(); ++r) {
      const auto& t = tracks_[candidates[r]];
      for (size_t c = 0; c < dets.size(); ++c) {
        const auto& d = detections[dets[c]];
        iou[r][c] = d.label_id == t.last.label_id ? box_iou(t.filter.box(), box_of(d)) : 0.0;
      }
    }
    std::vector<bool> used(dets.size(), false);
    for (const auto& [r, c] : greedy_match(iou, min_iou)) {
      auto& t = tracks_[candidates[r]];
      const auto& d = detections[dets[c]];
      t.filter.update(box_of(d));
      t.last = d;
      t.lost_frames = 0;
      matched[candidates[r]] = true;
      used[c] = true;
      out.push_back({t.id, d, false});
    }
    std::vector<int> rest;
    for (size_t c = 0; c < dets.size(); ++c) {
      if (!used[c]) rest.push_back(dets[c]);
    }
    dets = rest;
  };
  std::vector<int> all;
  for (size_t i = 0; i < tracks_.size(); ++i) all.push_back(static_cast<int>(i));
  associate(all, high, options_.match_iou);
  // ByteTrack's second association: tracks seen on the last inferred frame that the
  // high-score boxes left unmatched, against the low-score boxes, at a stricter IoU.
  std::vector<int> recent;
  for (size_t i = 0; i < tracks_.size(); ++i) {
    if (!matched[i] && tracks_[i].shown) recent.push_back(static_cast<int>(i));
  }
  associate(recent, low, std::max(0.5, options_.match_iou));
  for (size_t i = 0; i < tracks_.size(); ++i) {
    tracks_[i].shown = matched[i];
    if (!matched[i]) ++tracks_[i].lost_frames;
  }
  drop_lost();
  for (int i : high) {
    const auto& d = detections[i];
    // A second box on an object already tracked this frame (a looser box around the same face
    // that NMS let through) is a duplicate, not a new object: it would start a track that
    // competes with the real one and steals its id when the detector keeps only the loose box.
    bool duplicate = false;
    for (const auto& o : out) {
      if (o.box.label_id != d.label_id) continue;
      const Box a = box_of(o.box), b = box_of(d);
      // Mostly inside a kept box (a tight box within a loose one: IoU can be under 0.5) is a
      // duplicate too.
      const double iw = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
      const double ih = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
      const double area = std::max(1e-9, (b[2] - b[0]) * (b[3] - b[1]));
      duplicate |= box_iou(a, b) >= kDuplicateIou || iw * ih / area >= kDuplicateInside;
    }
    if (duplicate) continue;
    tracks_.push_back(Track{next_id_++, BoxKalman(box_of(d)), d, 0, true});
    out.push_back({tracks_.back().id, d, false});
  }
  return out;
}

std::vector<TrackedObject> Tracker::predict() {
  std::vector<TrackedObject> out;
  for (auto& t : tracks_) {
    t.filter.predict();
    if (!t.shown) {
      ++t.lost_frames;
      continue;
    }
    const auto b = t.filter.box();
    Detection d = t.last;
    d.x1 = static_cast<float>(b[0]);
    d.y1 = static_cast<float>(b[1]);
    d.x2 = static_cast<float>(b[2]);
    d.y2 = static_cast<float>(b[3]);
    out.push_back({t.id, d, true});
  }
  drop_lost();
  return out;
}

}  // namespace autoassign
