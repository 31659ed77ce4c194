// SPDX-License-Identifier: MIT
#include "autoassign/train/teacher/distill.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "autoassign/infer/box_coder.h"
#include "autoassign/train/assign/loss.h"

namespace autoassign {

namespace F = torch::nn::functional;

torch::Tensor score_distillation_loss(const HeadOutput& out,
                                      const std::vector<torch::Tensor>& teacher, double gamma,
                                      const std::function<double(double)>& average,
                                      const std::vector<torch::Tensor>& raise_only,
                                      const std::vector<torch::Tensor>& suppress_outside) {
  if (teacher.size() != out.cls_logits.size()) {
    throw std::invalid_argument("teacher maps: " + std::to_string(teacher.size()) +
                                " levels for a network of " +
                                std::to_string(out.cls_logits.size()));
  }
  torch::Tensor sum = torch::zeros({}, out.cls_logits.front().options());
  double mass = 0;
  for (size_t l = 0; l < teacher.size(); ++l) {
    if (!teacher[l].defined()) continue;
    const auto& cls = out.cls_logits[l];
    const auto t = teacher[l].to(cls.device(), cls.scalar_type());
    if (t.dim() != 3 || t.size(0) != cls.size(0) || t.size(1) != cls.size(2) ||
        t.size(2) != cls.size(3)) {
      throw std::invalid_argument("teacher map of level " + std::to_string(l) + " is " +
                                  c10::str(t.sizes()) + ", the network's " + c10::str(cls.sizes()) +
                                  " (B, K, H, W)");
    }
    const auto logp =
        (F::logsigmoid(cls.select(1, 0)) + F::logsigmoid(out.obj_logits[l].select(1, 0)))
            .clamp_min(kLogClamp);
    const auto p = logp.exp();
    const auto log1mp = torch::log1p(-p).clamp_min(kLogClamp);
    const auto bce = -(t * logp + (1 - t) * log1mp);
    auto term = (t - p).abs().pow(gamma) * bce;
    const bool raise = l < raise_only.size() && raise_only[l].defined();
    const bool suppress = l < suppress_outside.size() && suppress_outside[l].defined();
    if (suppress) {
      auto keep = ~suppress_outside[l].to(cls.device()) & (p > t).detach();
      if (raise) keep = keep | (raise_only[l].to(cls.device()) & (p < t).detach());
      term = term * keep.to(term.scalar_type());
    } else if (raise) {
      const auto keep = ~raise_only[l].to(cls.device()) | (p < t).detach();
      term = term * keep.to(term.scalar_type());
    }
    sum = sum + term.sum();
    mass += t.sum().item<double>();
  }
  if (average) mass = average(mass);
  return sum / std::max(1.0, mass);
}

std::vector<torch::Tensor> inside_objects(const std::vector<Target>& targets,
                                          const std::vector<int>& strides,
                                          const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                          double min_side) {
  // Runs on the training step's thread for every batch: a crowd batch holds thousands of faces
  // and ignore regions, so each box marks only the cells of its own span (a few comparisons
  // each), not a tensor expression over the whole map (seven small tensor ops per box and
  // level). Location (x, y) of stride s is (x s, y s), inside a box when
  // strictly between its edges, compared in float as the network-input boxes are.
  std::vector<torch::Tensor> masks;
  const auto B = static_cast<int64_t>(targets.size());
  std::vector<std::vector<float>> boxes(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto& t = targets[static_cast<size_t>(b)];
    for (const auto* part : {&t.boxes, &t.ignore}) {
      if (!part->defined() || part->numel() == 0) continue;
      if (min_side > 0 && part == &t.ignore) continue;
      const auto c = part->to(torch::kCPU, torch::kFloat).contiguous();
      const float* v = c.data_ptr<float>();
      for (int64_t n = 0; n + 3 < c.numel(); n += 4) {
        // NaN sides fail the test too: such a box marks nothing.
        if (min_side > 0 && !(std::min(v[n + 2] - v[n], v[n + 3] - v[n + 1]) >= min_side)) continue;
        boxes[static_cast<size_t>(b)].insert(boxes[static_cast<size_t>(b)].end(), v + n, v + n + 4);
      }
    }
  }
  for (size_t l = 0; l < shapes.size(); ++l) {
    const auto [H, W] = shapes[l];
    const float s = static_cast<float>(strides.at(l));
    auto mask = torch::zeros({B, H, W}, torch::kBool);
    auto m = mask.accessor<bool, 3>();
    for (int64_t b = 0; b < B; ++b) {
      const auto& bx = boxes[static_cast<size_t>(b)];
      for (size_t n = 0; n + 3 < bx.size(); n += 4) {
        const float x1 = bx[n], y1 = bx[n + 1], x2 = bx[n + 2], y2 = bx[n + 3];
        if (!(x2 > x1 && y2 > y1)) continue;  // empty (or NaN): no location inside
        // The box's span in cells, widened by one and clamped to the map (in float first, so a
        // huge or infinite coordinate converts safely); the float test decides each cell.
        const auto cell = [s](float v, int64_t size, bool up) {
          const float c = std::clamp(v / s, -1.f, static_cast<float>(size));
          return std::clamp<int64_t>(static_cast<int64_t>(up ? std::ceil(c) : std::floor(c)), 0,
                                     size - 1);
        };
        const int64_t i0 = cell(x1, W, false), i1 = cell(x2, W, true);
        const int64_t j0 = cell(y1, H, false), j1 = cell(y2, H, true);
        for (int64_t j = j0; j <= j1; ++j) {
          const float y = static_cast<float>(j) * s;
          if (!(y > y1 && y < y2)) continue;
          for (int64_t i = i0; i <= i1; ++i) {
            const float x = static_cast<float>(i) * s;
            if (x > x1 && x < x2) m[b][j][i] = true;
          }
        }
      }
    }
    masks.push_back(mask);
  }
  return masks;
}

int add_unlabelled_faces(Target& target, const std::vector<TeacherBox>& boxes, double min_score,
                         double max_iou) {
  std::vector<float> found;
  for (const auto& b : boxes) {
    if (b.score >= min_score) found.insert(found.end(), {b.x1, b.y1, b.x2, b.y2});
  }
  if (found.empty()) return 0;
  auto cand = torch::tensor(found).view({-1, 4});
  std::vector<torch::Tensor> known;
  if (target.boxes.defined() && target.boxes.numel() > 0) known.push_back(target.boxes.cpu());
  if (target.ignore.defined() && target.ignore.numel() > 0) known.push_back(target.ignore.cpu());
  if (!known.empty()) {
    const auto all = torch::cat(known).to(torch::kFloat);
    const auto unmatched = std::get<0>(box_iou(cand, all).max(1)) < max_iou;
    cand = cand.index({unmatched});
  }
  const int added = static_cast<int>(cand.size(0));
  if (added == 0) return 0;
  target.ignore = (target.ignore.defined() && target.ignore.numel() > 0)
                      ? torch::cat({target.ignore.to(torch::kFloat), cand})
                      : cand;
  return added;
}

cv::Mat input_pixels(const torch::Tensor& image, const InputConfig& input) {
  const auto mean = torch::tensor(std::vector<float>(input.mean.begin(), input.mean.end()));
  const auto scale = torch::tensor(std::vector<float>(input.std.begin(), input.std.end()));
  const auto hwc =
      (image.detach().to(torch::kCPU, torch::kFloat) * scale.view({3, 1, 1}) + mean.view({3, 1, 1}))
          .permute({1, 2, 0})
          .contiguous();
  cv::Mat px(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_32FC3,
             hwc.data_ptr<float>());
  cv::Mat out;
  if (input.channel_order == "RGB") {
    cv::cvtColor(px, out, cv::COLOR_RGB2BGR);
  } else {
    out = px.clone();
  }
  return out;
}

TeacherHook::TeacherHook(const TrainOptions& options, const InputConfig& input,
                         std::vector<int> strides)
    : weight_(options.distill_weight),
      raise_inside_(options.distill_objects == "raise"),
      suppress_outside_(options.distill_objects == "suppress"),
      raise_min_size_(options.distill_raise_min_size),
      ignore_score_(options.teacher_ignore),
      input_(input),
      strides_(std::move(strides)) {
  // Levels finer than distill_min_stride get no map (dense() has no output at stride 0).
  for (int s : strides_) taught_.push_back(s >= options.distill_min_stride ? s : 0);
  for (int w = 0; w < std::max(1, options.loader_threads); ++w) {
    teachers_.push_back(std::make_unique<FaceTeacher>(options.teacher));
  }
}

void TeacherHook::prepare_batch(Batch& batch, int worker) {
  FaceTeacher& teacher = *teachers_.at(static_cast<size_t>(worker));
  const int64_t B = batch.images.size(0);
  std::vector<std::vector<torch::Tensor>> per_level(strides_.size());
  for (int64_t b = 0; b < B; ++b) {
    const auto view = teacher.dense(input_pixels(batch.images[b], input_), taught_, ignore_score_);
    for (size_t l = 0; l < strides_.size(); ++l) per_level[l].push_back(view.scores[l]);
    if (ignore_score_ > 0) {
      ignored_ +=
          add_unlabelled_faces(batch.targets[static_cast<size_t>(b)], view.boxes, ignore_score_);
    }
  }
  images_ += B;
  batch.teacher_scores.clear();
  for (auto& maps : per_level) {
    batch.teacher_scores.push_back(maps.front().defined() ? torch::stack(maps) : torch::Tensor());
  }
}

void TeacherHook::add_losses(TrainContext& ctx, const Batch& batch, const HeadOutput& out,
                             std::map<std::string, torch::Tensor>& losses) {
  if (weight_ <= 0) return;
  if (batch.teacher_scores.empty()) throw std::logic_error("a batch without its teacher maps");
  Communicator& comm = ctx.comm;
  std::vector<torch::Tensor> raise_only, suppress_outside;
  if (raise_inside_ || suppress_outside_) {
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (const auto& c : out.cls_logits) shapes.emplace_back(c.size(2), c.size(3));
    (raise_inside_ ? raise_only : suppress_outside) =
        inside_objects(batch.targets, strides_, shapes);
    if (suppress_outside_ && raise_min_size_ > 0) {
      raise_only = inside_objects(batch.targets, strides_, shapes, raise_min_size_);
    }
  }
  losses["loss_distill"] =
      weight_ * score_distillation_loss(
                    out, batch.teacher_scores, 2.0, [&comm](double v) { return comm.average(v); },
                    raise_only, suppress_outside);
}

void TeacherHook::after_train(TrainContext& ctx) {
  if (!ctx.main_rank || ctx.options.quiet) return;
  std::printf("teacher: %s (%s) on %lld images", ctx.options.teacher.c_str(),
              teachers_.front()->kind_name(), static_cast<long long>(images_.load()));
  if (ignore_score_ > 0) {
    std::printf("; %lld unannotated faces (score >= %g) became ignore regions",
                static_cast<long long>(ignored_.load()), ignore_score_);
  }
  std::printf("\n");
}

}  // namespace autoassign
