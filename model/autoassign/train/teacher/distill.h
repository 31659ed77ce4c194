// SPDX-License-Identifier: MIT
// Learning from a face teacher (issue 24): the teacher runs on each augmented training image in
// the loader threads (it sees exactly the crop, flip and colour the student sees); its score at
// every location of strides 8, 16 and 32 becomes a soft target for the student's score, and,
// optionally, its confident detections that match no annotation become ignore regions (WIDER
// leaves many small faces unannotated, which would otherwise be taught as background).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/train/engine/hooks.h"
#include "autoassign/train/teacher/face_teacher.h"

namespace autoassign {

/// The student's face score p = sigmoid(cls) x sigmoid(obj) (class 0) against the teacher's t
/// at the same locations, as GFL's quality focal loss: sum of |t - p|^gamma x BCE(p, t) over
/// the levels with a teacher map (`teacher[l]`: [B, H_l, W_l], undefined: none), divided by
/// max(1, sum of t) (the teacher's soft count of faces; `average` makes it the ranks' mean).
/// log p and log(1 - p) are clamped at -100, as PyTorch's BCE clamps.
/// `raise_only` (per level [B, H_l, W_l] bool, or empty): where set, the term counts only
/// while p < t, so the teacher can raise the student's score there but never lower it (inside
/// annotated objects, where the labels say "face" whatever the teacher sees).
/// `suppress_outside` (the same masks): the term counts only where unset and p > t, so the
/// teacher only lowers the student's confident scores away from every annotation (its false
/// positives) and leaves the faces to the labels. With both: the term counts where
/// `suppress_outside` is unset and p > t, and where `raise_only` is set and p < t (raising
/// inside the large faces, lowering away from every annotation, nothing elsewhere).
torch::Tensor score_distillation_loss(const HeadOutput& out,
                                      const std::vector<torch::Tensor>& teacher, double gamma = 2.0,
                                      const std::function<double(double)>& average = nullptr,
                                      const std::vector<torch::Tensor>& raise_only = {},
                                      const std::vector<torch::Tensor>& suppress_outside = {});

/// Per level, the locations (u*s, v*s) strictly inside some annotated object or ignore region
/// of their image (the faces too small or invalid to learn are ignore regions, and hard AP
/// counts them): [B, H_l, W_l] bool for levels of `shapes` (H_l, W_l). With `min_side` > 0:
/// inside annotated objects whose shorter side is at least `min_side`, ignore regions not.
std::vector<torch::Tensor> inside_objects(const std::vector<Target>& targets,
                                          const std::vector<int>& strides,
                                          const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                          double min_side = 0);

/// Appends to `target.ignore` every teacher box scored at least `min_score` whose IoU with each
/// annotated object and ignore region is under `max_iou`. Returns how many it added.
int add_unlabelled_faces(Target& target, const std::vector<TeacherBox>& boxes, double min_score,
                         double max_iou = 0.3);

/// One normalised network input [3, H, W] back into the pixels the student saw: BGR, CV_32FC3,
/// 0..255 (x * std + mean per channel, RGB inputs swapped).
cv::Mat input_pixels(const torch::Tensor& image, const InputConfig& input);

/// TrainOptions::teacher: one FaceTeacher per loader thread (an OpenCV Net runs one image at a
/// time), the maps and ignore regions made in prepare_batch, loss_distill in add_losses.
class TeacherHook : public TrainHook {
 public:
  TeacherHook(const TrainOptions& options, const InputConfig& input, std::vector<int> strides);
  void prepare_batch(Batch& batch, int worker) override;
  void add_losses(TrainContext& ctx, const Batch& batch, const HeadOutput& out,
                  std::map<std::string, torch::Tensor>& losses) override;
  void after_train(TrainContext& ctx) override;
  const FaceTeacher& teacher(int worker) const { return *teachers_.at(worker); }

 private:
  double weight_;
  bool raise_inside_, suppress_outside_;
  double raise_min_size_;
  double ignore_score_;
  InputConfig input_;
  std::vector<int> strides_, taught_;
  std::vector<std::unique_ptr<FaceTeacher>> teachers_;
  std::atomic<int64_t> images_{0}, ignored_{0};
};

}  // namespace autoassign
