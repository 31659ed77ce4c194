// SPDX-License-Identifier: MIT
#include "autoassign/train/teacher/distill.h"

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
    if (l < raise_only.size() && raise_only[l].defined()) {
      const auto keep = ~raise_only[l].to(cls.device()) | (p < t).detach();
      term = term * keep.to(term.scalar_type());
    }
    if (l < suppress_outside.size() && suppress_outside[l].defined()) {
      const auto keep = ~suppress_outside[l].to(cls.device()) & (p > t).detach();
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
                                          const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  std::vector<torch::Tensor> masks;
  const auto B = static_cast<int64_t>(targets.size());
  for (size_t l = 0; l < shapes.size(); ++l) {
    const auto [H, W] = shapes[l];
    const float s = static_cast<float>(strides.at(l));
    const auto ys = (torch::arange(H, torch::kFloat) * s).view({H, 1});
    const auto xs = (torch::arange(W, torch::kFloat) * s).view({1, W});
    auto mask = torch::zeros({B, H, W}, torch::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const auto& t = targets[static_cast<size_t>(b)];
      std::vector<torch::Tensor> parts;
      for (const auto* boxes : {&t.boxes, &t.ignore}) {
        if (boxes->defined() && boxes->numel() > 0) {
          parts.push_back(boxes->to(torch::kCPU, torch::kFloat).view({-1, 4}));
        }
      }
      if (parts.empty()) continue;
      const auto bx = torch::cat(parts);
      auto m = mask[b];
      for (int64_t n = 0; n < bx.size(0); ++n) {
        const auto r = bx[n];
        m |= (xs > r[0]) & (xs < r[2]) & (ys > r[1]) & (ys < r[3]);
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
