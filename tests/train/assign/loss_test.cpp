// SPDX-License-Identifier: MIT
// The assignment and the losses against plain double-precision loops over the formulas of
// AUTOASSIGN.md sections 2-3, on hand-built boxes over a small two-level grid.
#include "autoassign/train/assign/loss.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "autoassign/infer/modeling/model.h"
#include "fixtures.h"

namespace autoassign {
namespace {

struct Box {
  double x1, y1, x2, y2;
  int64_t label;
};

// A two-level grid: P3 (stride 8) 5x5 and P4 (stride 16) 3x3, J = 34, K = 2 classes.
struct Scene {
  std::vector<int> strides = {8, 16};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 5}, {3, 3}};
  int64_t K = 2;
  HeadOutput out;  // NCHW, batch 1
  Grid grid;
  CenterPrior prior{2};

  Scene(unsigned seed) {
    torch::manual_seed(seed);
    for (const auto& [h, w] : shapes) {
      out.cls_logits.push_back(torch::randn({1, K, h, w}).requires_grad_());
      out.obj_logits.push_back(torch::randn({1, 1, h, w}).requires_grad_());
      out.distances.push_back((torch::rand({1, 4, h, w}) * 14 + 1).requires_grad_());
    }
    grid = make_grid(shapes, strides);
    torch::NoGradGuard g;
    // Non-default prior so that class indexing of mu/sigma matters.
    prior->mu.copy_(torch::tensor({{0.2, -0.3}, {-0.1, 0.4}}));
    prior->sigma.copy_(torch::tensor({{0.8, 1.3}, {1.1, 0.6}}));
  }

  // Location j -> (level, u, v); the flatten order is P3 then P4, row-major.
  void locate(int64_t j, int& level, int64_t& u, int64_t& v) const {
    level = 0;
    while (j >= shapes[level].first * shapes[level].second) {
      j -= shapes[level].first * shapes[level].second;
      ++level;
    }
    v = j / shapes[level].second;
    u = j % shapes[level].second;
  }
  int64_t J() const { return 25 + 9; }
  double z(int64_t j, int64_t k) const { return at(out.cls_logits, j, k); }
  double o(int64_t j) const { return at(out.obj_logits, j, 0); }
  double d(int64_t j, int64_t c) const { return at(out.distances, j, c); }
  double px(int64_t j) const {
    int l;
    int64_t u, v;
    locate(j, l, u, v);
    return double(u) * strides[l];
  }
  double py(int64_t j) const {
    int l;
    int64_t u, v;
    locate(j, l, u, v);
    return double(v) * strides[l];
  }
  double s(int64_t j) const {
    int l;
    int64_t u, v;
    locate(j, l, u, v);
    return strides[l];
  }

  double at(const std::vector<torch::Tensor>& t, int64_t j, int64_t c) const {
    int l;
    int64_t u, v;
    locate(j, l, u, v);
    return t[l][0][c][v][u].item<double>();
  }
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double iou(const double a[4], const double b[4]) {
  const double iw = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double ih = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = iw * ih;
  const double uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

double giou(const double a[4], const double b[4]) {
  const double iw = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double ih = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = iw * ih;
  const double uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  const double cw = std::max(a[2], b[2]) - std::min(a[0], b[0]);
  const double ch = std::max(a[3], b[3]) - std::min(a[1], b[1]);
  return inter / uni - (cw * ch - uni) / (cw * ch);
}

// Everything of section 3 for one image, by loops in double precision.
struct Reference {
  std::vector<std::vector<bool>> inside;              // [N][J]
  std::vector<std::vector<double>> G, Giou, P, wpos;  // [N][J] (0 outside)
  std::vector<double> bag;                            // [N]
  std::vector<double> u;                              // [J]
  std::vector<std::vector<double>> wneg;              // [J][K]
  double loss_pos = 0, loss_neg = 0, prior_sum = 0;
  int candidates = 0;
};

// `ignore`: regions (label unused) whose interior locations outside every gt get w- = 0.
Reference reference(const Scene& sc, const std::vector<Box>& gts,
                    const std::vector<Box>& ignore = {}) {
  const int64_t J = sc.J(), K = sc.K, N = static_cast<int64_t>(gts.size());
  Reference r;
  r.inside.assign(N, std::vector<bool>(J, false));
  r.G = r.Giou = r.P = r.wpos = std::vector<std::vector<double>>(N, std::vector<double>(J, 0.0));
  r.bag.assign(N, 0.0);
  r.u.assign(J, 0.0);
  r.wneg.assign(J, std::vector<double>(K, 1.0));
  auto mu = sc.prior->mu.detach(), sigma = sc.prior->sigma.detach();
  for (int64_t j = 0; j < J; ++j) {
    const double pred[4] = {sc.px(j) - sc.d(j, 0), sc.py(j) - sc.d(j, 1), sc.px(j) + sc.d(j, 2),
                            sc.py(j) + sc.d(j, 3)};
    for (const auto& g : gts) {
      const double b[4] = {g.x1, g.y1, g.x2, g.y2};
      r.u[j] = std::max(r.u[j], iou(pred, b));
    }
  }
  std::vector<std::vector<double>> phi(J, std::vector<double>(K, 0.0));
  for (int64_t n = 0; n < N; ++n) {
    const auto& g = gts[n];
    const double b[4] = {g.x1, g.y1, g.x2, g.y2};
    const double cx = (g.x1 + g.x2) / 2, cy = (g.y1 + g.y2) / 2;
    double esum = 0, vmin = 1e300, vmax = -1e300;
    std::vector<double> e(J, 0.0);
    for (int64_t j = 0; j < J; ++j) {
      const double x = sc.px(j), y = sc.py(j);
      if (!(std::min({x - g.x1, y - g.y1, g.x2 - x, g.y2 - y}) > 0)) continue;
      r.inside[n][j] = true;
      ++r.candidates;
      const double dx = (x - cx) / sc.s(j), dy = (y - cy) / sc.s(j);
      const double mx = mu[g.label][0].item<double>(), my = mu[g.label][1].item<double>();
      const double sx = sigma[g.label][0].item<double>(), sy = sigma[g.label][1].item<double>();
      r.G[n][j] = std::exp(-(dx - mx) * (dx - mx) / (2 * sx * sx)) *
                  std::exp(-(dy - my) * (dy - my) / (2 * sy * sy));
      const double pred[4] = {x - sc.d(j, 0), y - sc.d(j, 1), x + sc.d(j, 2), y + sc.d(j, 3)};
      r.Giou[n][j] = giou(pred, b);
      r.P[n][j] =
          sigmoid(sc.z(j, g.label)) * sigmoid(sc.o(j)) * std::exp(-5.0 * (1 - r.Giou[n][j]));
      e[j] = std::exp(3.0 * r.P[n][j]) * r.G[n][j];
      esum += e[j];
      r.prior_sum += r.G[n][j];
      const double v = 1.0 / std::max(1.0 - r.u[j], 1e-12);
      vmin = std::min(vmin, v);
      vmax = std::max(vmax, v);
    }
    for (int64_t j = 0; j < J; ++j) {
      if (!r.inside[n][j]) continue;
      r.wpos[n][j] = e[j] / std::max(esum, 1e-12);
      r.bag[n] += r.wpos[n][j] * r.P[n][j];
      const double v = 1.0 / std::max(1.0 - r.u[j], 1e-12);
      phi[j][g.label] = (v - vmin + 1e-12) / (vmax - vmin + 1e-12);  // later n overwrite
    }
    if (esum > 0) r.loss_pos += -std::max(std::log(r.bag[n]), -100.0);
  }
  auto strictly_inside = [&](int64_t j, const Box& g) {
    return std::min({sc.px(j) - g.x1, sc.py(j) - g.y1, g.x2 - sc.px(j), g.y2 - sc.py(j)}) > 0;
  };
  for (int64_t j = 0; j < J; ++j) {
    bool in_gt = false, in_ignore = false;
    for (const auto& g : gts) in_gt = in_gt || strictly_inside(j, g);
    for (const auto& g : ignore) in_ignore = in_ignore || strictly_inside(j, g);
    for (int64_t k = 0; k < K; ++k) {
      r.wneg[j][k] = in_ignore && !in_gt ? 0.0 : 1.0 - phi[j][k];
      const double y = sigmoid(sc.z(j, k)) * sigmoid(sc.o(j)) * r.wneg[j][k];
      r.loss_neg += y * y * -std::max(std::log(1 - y), -100.0);
    }
  }
  return r;
}

Target make_target(const std::vector<Box>& gts, const std::vector<Box>& ignore = {}) {
  std::vector<float> b, ig;
  std::vector<int64_t> l;
  for (const auto& g : gts) {
    b.insert(b.end(), {float(g.x1), float(g.y1), float(g.x2), float(g.y2)});
    l.push_back(g.label);
  }
  for (const auto& g : ignore)
    ig.insert(ig.end(), {float(g.x1), float(g.y1), float(g.x2), float(g.y2)});
  return {torch::tensor(b).view({-1, 4}), torch::tensor(l, torch::kLong),
          torch::tensor(ig).view({-1, 4})};
}

void expect_near_rel(double actual, double expected, double rel, const std::string& what) {
  EXPECT_NEAR(actual, expected, rel * std::max(1.0, std::abs(expected))) << what;
}

// Checks every per-pair and per-location quantity of assign_image against the reference.
void check_case(const std::vector<Box>& gts, unsigned seed, const std::vector<Box>& ignore = {}) {
  Scene sc(seed);
  const Reference ref = reference(sc, gts, ignore);
  const auto a =
      assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts, ignore), *sc.prior);
  ASSERT_EQ(a.pair_gt.numel(), ref.candidates);
  for (int64_t p = 0; p < a.pair_gt.numel(); ++p) {
    const int64_t n = a.pair_gt[p].item<int64_t>(), j = a.pair_loc[p].item<int64_t>();
    ASSERT_TRUE(ref.inside[n][j]) << "pair (" << n << ", " << j << ") is not inside";
    const std::string at = " at n=" + std::to_string(n) + " j=" + std::to_string(j);
    expect_near_rel(a.prior[p].item<double>(), ref.G[n][j], 1e-5, "G" + at);
    expect_near_rel(a.giou[p].item<double>(), ref.Giou[n][j], 1e-5, "GIoU" + at);
    expect_near_rel(a.joint[p].item<double>(), ref.P[n][j], 1e-5, "P" + at);
    expect_near_rel(a.pos_weight[p].item<double>(), ref.wpos[n][j], 1e-5, "w+" + at);
  }
  for (size_t n = 0; n < gts.size(); ++n) {
    expect_near_rel(a.bag_prob[n].item<double>(), ref.bag[n], 1e-5, "Pbar n=" + std::to_string(n));
  }
  for (int64_t j = 0; j < sc.J(); ++j) {
    expect_near_rel(a.max_iou[j].item<double>(), ref.u[j], 1e-5, "u j=" + std::to_string(j));
    for (int64_t k = 0; k < sc.K; ++k) {
      EXPECT_NEAR(a.neg_weight[j][k].item<double>(), ref.wneg[j][k], 1e-4)
          << "w- j=" << j << " k=" << k;
    }
  }
  expect_near_rel(a.loss_pos_sum.item<double>(), ref.loss_pos, 1e-5, "sum l+");
  expect_near_rel(a.loss_neg_sum.item<double>(), ref.loss_neg, 1e-4, "sum l-");
  expect_near_rel(a.prior_sum.item<double>(), ref.prior_sum, 1e-5, "sum G m");
}

TEST(Assignment, OneBox) {
  // Interior: (8..16, 8..16) at stride 8 and (16, 16) at stride 16.
  check_case({{3, 5, 21, 19, 0}}, 1);
}

TEST(Assignment, TwoOverlappingBoxesSameClass) {
  const std::vector<Box> gts = {{3, 3, 27, 21, 1}, {9, 5, 35, 30, 1}};
  check_case(gts, 2);
  // Locations inside both boxes carry the second gt's f (last gt wins), and only in class 1.
  Scene sc(2);
  const auto a = assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior);
  const auto ref = reference(sc, gts);
  int shared = 0;
  for (int64_t j = 0; j < sc.J(); ++j) {
    if (ref.inside[0][j] && ref.inside[1][j]) {
      ++shared;
      EXPECT_EQ(a.neg_weight[j][0].item<float>(), 1.0f);
    }
  }
  EXPECT_GT(shared, 0) << "the case must have locations inside both boxes";
}

TEST(Assignment, TwoOverlappingBoxesDifferentClasses) {
  const std::vector<Box> gts = {{3, 3, 27, 21, 0}, {9, 5, 35, 30, 1}};
  check_case(gts, 3);
  // Each gt writes its own class column: some location inside both boxes has a reduced
  // weight in both columns (the location of a gt's lowest IoU gets f ~ 0, so not all do).
  Scene sc(3);
  const auto a = assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior);
  const auto ref = reference(sc, gts);
  int both_reduced = 0;
  for (int64_t j = 0; j < sc.J(); ++j) {
    if (ref.inside[0][j] && ref.inside[1][j] && a.neg_weight[j][0].item<float>() < 1.0f &&
        a.neg_weight[j][1].item<float>() < 1.0f) {
      ++both_reduced;
    }
  }
  EXPECT_GT(both_reduced, 0);
}

TEST(Assignment, BoxWithExactlyOneInteriorLocation) {
  // Only (8, 8) is strictly inside; the P4 point (16, 16) lies outside.
  const std::vector<Box> gts = {{7, 7, 9.5, 9.5, 1}};
  check_case(gts, 4);
  Scene sc(4);
  const auto a = assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior);
  ASSERT_EQ(a.pair_gt.numel(), 1);
  const int64_t j = a.pair_loc[0].item<int64_t>();
  EXPECT_EQ(j, 1 * 5 + 1);                                  // (u, v) = (1, 1) on P3
  EXPECT_FLOAT_EQ(a.pos_weight[0].item<float>(), 1.0f);     // w+ = 1
  EXPECT_FLOAT_EQ(a.neg_weight[j][1].item<float>(), 0.0f);  // f = 1, so w- = 0
  EXPECT_FLOAT_EQ(a.neg_weight[j][0].item<float>(), 1.0f);
}

TEST(Assignment, BoxWithNoInteriorLocation) {
  // (0, 0) and (8, 8) are on the border or outside: no candidate at all.
  const std::vector<Box> gts = {{0, 1, 8, 7.5, 0}, {3, 5, 21, 19, 1}};
  check_case(gts, 5);
  Scene sc(5);
  const auto a = assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior);
  EXPECT_FALSE(a.has_candidates[0].item<bool>());
  EXPECT_TRUE(a.has_candidates[1].item<bool>());
  EXPECT_EQ(a.bag_prob[0].item<float>(), 0.0f);
}

// [MMD]'s force_topk: the gt with no interior location takes the k locations of largest
// centre prior as candidates; the brute-force G below is computed location by location from
// the formula of AUTOASSIGN.md 3.6, independently of CenterPrior's vectorised code.
TEST(Assignment, ForceTopkGivesTinyBoxesTheLocationsOfLargestPrior) {
  const std::vector<Box> gts = {{0, 1, 8, 7.5, 0}, {3, 5, 21, 19, 1}};
  Scene sc(5);
  AssignOptions options;
  options.force_topk = 3;
  const auto a =
      assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior, options);
  EXPECT_TRUE(a.has_candidates[0].item<bool>());
  EXPECT_GT(a.bag_prob[0].item<float>(), 0.0f);
  // Brute force: G for every location, gt 0 (class 0: mu (0.2, -0.3), sigma (0.8, 1.3)).
  const double gx = 4.0, gy = 4.25;
  std::vector<std::pair<double, int64_t>> g;
  for (int64_t j = 0; j < sc.grid.points.size(0); ++j) {
    const double px = sc.grid.points[j][0].item<double>(), py = sc.grid.points[j][1].item<double>();
    const double s = sc.grid.strides[j].item<double>();
    const double dx = (px - gx) / s - 0.2, dy = (py - gy) / s + 0.3;
    g.emplace_back(std::exp(-dx * dx / (2 * 0.8 * 0.8)) * std::exp(-dy * dy / (2 * 1.3 * 1.3)), j);
  }
  std::sort(g.begin(), g.end(), std::greater<>());
  std::set<int64_t> expected = {g[0].second, g[1].second, g[2].second};
  std::set<int64_t> got;
  for (int64_t p = 0; p < a.pair_gt.numel(); ++p) {
    if (a.pair_gt[p].item<int64_t>() == 0) got.insert(a.pair_loc[p].item<int64_t>());
  }
  EXPECT_EQ(got, expected);
  // The gt that has interior locations keeps exactly those (force_topk changes nothing there).
  Scene plain(5);
  const auto b =
      assign_image(flatten_outputs(plain.out)[0], plain.grid, make_target(gts), *plain.prior);
  std::vector<int64_t> with, without;
  for (int64_t p = 0; p < a.pair_gt.numel(); ++p) {
    if (a.pair_gt[p].item<int64_t>() == 1) with.push_back(a.pair_loc[p].item<int64_t>());
  }
  for (int64_t p = 0; p < b.pair_gt.numel(); ++p) {
    if (b.pair_gt[p].item<int64_t>() == 1) without.push_back(b.pair_loc[p].item<int64_t>());
  }
  EXPECT_EQ(with, without);
}

// Ignore regions (WIDER "invalid" faces, faces too small to learn): the locations strictly
// inside one and inside no gt carry no negative loss; everything else is as without them.
TEST(Assignment, IgnoreRegionsSilenceOnlyTheirOwnBackground) {
  const std::vector<Box> gts = {{3, 5, 21, 19, 0}};
  // P3 points (16..32, 16..32) and P4 points (16, 16), (16, 32), (32, 16), (32, 32) are inside
  // the region; (16, 16) on both levels is also inside the gt and keeps its weight.
  const std::vector<Box> ignore = {{10, 10, 34, 34, 0}};
  check_case(gts, 7, ignore);
  Scene sc(7);
  const auto with =
      assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts, ignore), *sc.prior);
  const auto without =
      assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target(gts), *sc.prior);
  std::vector<int64_t> silenced;
  for (int64_t j = 0; j < sc.J(); ++j) {
    if (with.neg_weight[j][0].item<float>() == 0.0f &&
        with.neg_weight[j][1].item<float>() == 0.0f &&
        without.neg_weight[j][1].item<float>() == 1.0f) {
      silenced.push_back(j);
    }
  }
  // By hand: P3 rows v = 2..4, columns u = 2..4 (9 points) less (16, 16); P4 (1..2, 1..2) less
  // (16, 16): 8 + 3.
  std::vector<int64_t> expected;
  for (int64_t v = 2; v <= 4; ++v)
    for (int64_t u = 2; u <= 4; ++u)
      if (u != 2 || v != 2) expected.push_back(v * 5 + u);
  for (int64_t v = 1; v <= 2; ++v)
    for (int64_t u = 1; u <= 2; ++u)
      if (u != 1 || v != 1) expected.push_back(25 + v * 3 + u);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(silenced, expected);
  // The positive side does not see the regions.
  EXPECT_TRUE(torch::equal(with.pair_loc, without.pair_loc));
  EXPECT_FLOAT_EQ(with.loss_pos_sum.item<float>(), without.loss_pos_sum.item<float>());
  EXPECT_LT(with.loss_neg_sum.item<double>(), without.loss_neg_sum.item<double>());
  // An image whose only annotation is an ignore region.
  check_case({}, 8, ignore);
}

TEST(Assignment, BorderPointIsOutside) {
  // x = 16 lies exactly on x2 = 16: outside (strict inequality).
  Scene sc(6);
  const auto a = assign_image(flatten_outputs(sc.out)[0], sc.grid, make_target({{4, 4, 16, 12, 0}}),
                              *sc.prior);
  ASSERT_EQ(a.pair_gt.numel(), 1);
  EXPECT_EQ(a.pair_loc[0].item<int64_t>(), 1 * 5 + 1);  // only (8, 8)
}

TEST(Loss, BatchNormalisersAndWeights) {
  // Two images through autoassign_loss against the reference sums of 3.7.
  torch::manual_seed(11);
  Scene s0(21), s1(22);
  HeadOutput out;
  for (size_t l = 0; l < 2; ++l) {
    out.cls_logits.push_back(torch::cat({s0.out.cls_logits[l], s1.out.cls_logits[l]}));
    out.obj_logits.push_back(torch::cat({s0.out.obj_logits[l], s1.out.obj_logits[l]}));
    out.distances.push_back(torch::cat({s0.out.distances[l], s1.out.distances[l]}));
  }
  const std::vector<Box> g0 = {{3, 5, 21, 19, 0}, {9, 5, 35, 30, 1}};
  const std::vector<Box> g1 = {{7, 7, 9.5, 9.5, 1}, {0, 1, 8, 7.5, 0}, {2, 2, 30, 33, 0}};
  const auto r0 = reference(s0, g0), r1 = reference(s1, g1);
  auto losses = autoassign_loss(out, s0.strides, {make_target(g0), make_target(g1)}, *s0.prior);
  const double n_tot = 5, z = r0.prior_sum + r1.prior_sum;
  const double pos = 0.25 * (r0.loss_pos + r1.loss_pos) / n_tot;
  const double neg = 0.75 * (r0.loss_neg + r1.loss_neg) / std::max(1.0, z);
  const double center = 0.75 * (2.0 / r0.prior_sum + 3.0 / r1.prior_sum) / 2.0;
  expect_near_rel(losses["loss_pos"].item<double>(), pos, 1e-5, "loss_pos");
  expect_near_rel(losses["loss_neg"].item<double>(), neg, 1e-4, "loss_neg");
  expect_near_rel(losses["loss_center"].item<double>(), center, 1e-5, "loss_center");

  // Under a distributed job N_tot and Z are replaced by their mean over ranks.
  auto doubled = autoassign_loss(out, s0.strides, {make_target(g0), make_target(g1)}, *s0.prior,
                                 [](double v) { return 2 * v; });
  expect_near_rel(doubled["loss_pos"].item<double>(), pos / 2, 1e-5, "loss_pos reduced");
  expect_near_rel(doubled["loss_neg"].item<double>(), 0.75 * (r0.loss_neg + r1.loss_neg) / (2 * z),
                  1e-4, "loss_neg reduced");
}

TEST(Loss, RegWeightAddsThePositiveWeightedGiouOfTheAssignedLocations) {
  // The optional localisation term: W * sum_nj w+_nj (1 - GIoU_nj) / N_tot, against the loop
  // reference; the [OFF] terms stay as they were and w+ carries no gradient, so the term
  // moves only the distances.
  Scene sc(23);
  const std::vector<Box> gts = {{3, 5, 21, 19, 0}, {9, 5, 35, 30, 1}, {2, 2, 30, 33, 0}};
  const auto ref = reference(sc, gts);
  double expected = 0;
  for (size_t n = 0; n < gts.size(); ++n) {
    for (int64_t j = 0; j < sc.J(); ++j) {
      if (ref.inside[n][j]) expected += ref.wpos[n][j] * (1.0 - ref.Giou[n][j]);
    }
  }
  ASSERT_GT(expected, 0.0);
  AssignOptions options;
  options.reg_weight = 2.5;
  auto plain = autoassign_loss(sc.out, sc.strides, {make_target(gts)}, *sc.prior);
  auto with = autoassign_loss(sc.out, sc.strides, {make_target(gts)}, *sc.prior, nullptr, options);
  EXPECT_EQ(plain.count("loss_reg"), 0u);
  ASSERT_EQ(with.count("loss_reg"), 1u);
  expect_near_rel(with["loss_reg"].item<double>(), 2.5 * expected / 3.0, 1e-5, "loss_reg");
  for (const char* k : {"loss_pos", "loss_neg", "loss_center"}) {
    EXPECT_DOUBLE_EQ(with[k].item<double>(), plain[k].item<double>()) << k;
  }
  std::vector<torch::Tensor> inputs = {sc.out.distances[0], sc.out.distances[1],
                                       sc.out.cls_logits[0], sc.out.obj_logits[0]};
  auto grads = torch::autograd::grad({with["loss_reg"]}, inputs, {}, false, false, true);
  EXPECT_GT(grads[0].abs().sum().item<double>() + grads[1].abs().sum().item<double>(), 0.0);
  for (size_t i = 2; i < grads.size(); ++i) {
    EXPECT_TRUE(!grads[i].defined() || grads[i].abs().sum().item<double>() == 0.0)
        << "the positive weights must be constants in loss_reg";
  }
}

// A full tiny model at its initial weights.
struct InitialModel : ::testing::Test {
  void SetUp() override {
    torch::manual_seed(0);
    model = AutoAssign(testing::tiny_config(/*num_classes=*/3, /*max_level=*/7, 128, 128));
    model->train();
    images = torch::randn({1, 3, 128, 128});
  }
  AutoAssign model{nullptr};
  torch::Tensor images;
};

TEST_F(InitialModel, HeadInitialisation) {
  EXPECT_NEAR(model->head->cls_pred->bias[0].item<double>(), -std::log(49.0), 1e-6);
  EXPECT_NEAR(model->head->cls_pred->bias[0].item<double>(), -3.8918, 1e-4);
  auto out = model->forward(images);
  const auto strides = model->strides();
  for (size_t l = 0; l < out.distances.size(); ++l) {
    // reg bias 4 and N(0, 0.01) weights: every distance is about 4 strides.
    const double mean = (out.distances[l] / strides[l]).mean().item<double>();
    EXPECT_NEAR(mean, 4.0, 0.25) << "level " << l;
    EXPECT_NEAR(torch::sigmoid(out.obj_logits[l]).mean().item<double>(), 0.5, 0.05);
    EXPECT_NEAR(torch::sigmoid(out.cls_logits[l]).mean().item<double>(), 0.02, 0.005);
  }
  EXPECT_TRUE(torch::equal(model->center_prior->mu, torch::zeros({3, 2})));
  EXPECT_TRUE(torch::equal(model->center_prior->sigma, torch::ones({3, 2})));
  EXPECT_TRUE(torch::equal(model->head->scales, torch::ones({5})));
}

TEST_F(InitialModel, EmptyImageHasOnlyNegativeLoss) {
  auto out = model->forward(images);
  Target empty{torch::zeros({0, 4}), torch::zeros({0}, torch::kLong), {}};
  auto losses = autoassign_loss(out, model->strides(), {empty}, *model->center_prior);
  EXPECT_GT(losses["loss_neg"].item<double>(), 0.0);
  EXPECT_EQ(losses["loss_pos"].item<double>(), 0.0);
  EXPECT_EQ(losses["loss_center"].item<double>(), 0.0);
  // The graph still reaches mu, sigma and the regression branch (no unused parameters).
  (losses["loss_pos"] + losses["loss_neg"] + losses["loss_center"]).backward();
  EXPECT_TRUE(model->center_prior->mu.grad().defined());
  EXPECT_TRUE(model->head->reg_pred->weight.grad().defined());
}

TEST_F(InitialModel, OneGtGivesFinitePositiveLossesAndPriorGradients) {
  auto out = model->forward(images);
  Target t{torch::tensor({{20.f, 30.f, 90.f, 100.f}}), torch::tensor({2}, torch::kLong), {}};
  auto losses = autoassign_loss(out, model->strides(), {t}, *model->center_prior);
  for (const char* name : {"loss_pos", "loss_neg", "loss_center"}) {
    const double v = losses[name].item<double>();
    EXPECT_TRUE(std::isfinite(v)) << name;
    EXPECT_GT(v, 0.0) << name;
  }
  // Section 3.11: at the start pi*omega ~ 0.01 and an 8-stride box scores P_loc << 1, so
  // -log Pbar is large and loss_pos is of the order of 2.
  EXPECT_GT(losses["loss_pos"].item<double>(), 1.0);
  EXPECT_LT(losses["loss_neg"].item<double>(), 0.05);
  (losses["loss_pos"] + losses["loss_neg"] + losses["loss_center"]).backward();
  const auto mu_grad = model->center_prior->mu.grad(),
             sigma_grad = model->center_prior->sigma.grad();
  EXPECT_GT(mu_grad[2].abs().sum().item<double>(), 0.0);
  EXPECT_GT(sigma_grad[2].abs().sum().item<double>(), 0.0);
  // Classes without a gt get no gradient from the data terms.
  EXPECT_EQ(sigma_grad[0].abs().sum().item<double>(), 0.0);
}

TEST_F(InitialModel, NegativeWeightsAndNormaliserCarryNoGradient) {
  auto out = model->forward(images);
  Target t{torch::tensor({{20.f, 30.f, 90.f, 100.f}}), torch::tensor({1}, torch::kLong), {}};
  const Grid grid = [&] {
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (const auto& c : out.cls_logits) shapes.emplace_back(c.size(2), c.size(3));
    return make_grid(shapes, model->strides());
  }();
  auto a = assign_image(flatten_outputs(out)[0], grid, t, *model->center_prior);
  EXPECT_FALSE(a.neg_weight.requires_grad());
  EXPECT_FALSE(a.max_iou.requires_grad());
  EXPECT_TRUE(a.pos_weight.requires_grad());  // w+ is not detached
  // loss_neg depends on mu/sigma only through Z; Z is detached, so no gradient arrives.
  auto losses = autoassign_loss(out, model->strides(), {t}, *model->center_prior);
  losses["loss_neg"].backward();
  const auto g = model->center_prior->sigma.grad();
  EXPECT_TRUE(!g.defined() || g.abs().sum().item<double>() == 0.0);
}

}  // namespace
}  // namespace autoassign
