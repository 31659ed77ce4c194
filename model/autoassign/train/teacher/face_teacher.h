// SPDX-License-Identifier: MIT
// A face detector that teaches (issue 24): YuNet (libfacedetection.train's fixed 640x640 ONNX
// exports) or SCRFD (insightface's KPS exports), run through OpenCV's DNN module. Two uses:
// detect() runs it exactly as ../shared/tools/face_peers.py does (the reference its decoding
// is tested against), and dense() runs it on a training image as the student sees it, giving
// the teacher's score at every location of the strides both networks share.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <torch/torch.h>

namespace autoassign {

enum class TeacherKind { kYuNet, kScrfd };

/// One face box: corners in the pixels of the image given, and the teacher's score.
struct TeacherBox {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0, score = 0;
};

/// The teacher's view of one training image.
struct TeacherView {
  /// Per requested stride: the score map [ceil(H/s), ceil(W/s)] over the image's locations
  /// (the best anchor's score where a location has two), or undefined where the teacher has no
  /// output at that stride (it has 8, 16 and 32).
  std::vector<torch::Tensor> scores;
  /// Its detections above `box_threshold` after NMS, in the image's pixels.
  std::vector<TeacherBox> boxes;
};

class FaceTeacher {
 public:
  /// The canvas both published teachers take (their ONNX files have fixed shapes).
  static constexpr int kCanvas = 640;

  /// Loads the ONNX file and runs it once on a blank canvas: throws std::runtime_error naming
  /// the file when it cannot be read, is not ONNX, or has neither YuNet's nor SCRFD's outputs.
  explicit FaceTeacher(const std::string& onnx_path);
  TeacherKind kind() const { return kind_; }
  const char* kind_name() const { return kind_ == TeacherKind::kYuNet ? "YuNet" : "SCRFD"; }

  /// face_peers.py's pass on a BGR uint8 image (its letterbox, normalisation, decoding, score
  /// threshold and NMS: YuNet 0.02 / 0.45, SCRFD 0.02 / 0.4 by default): boxes in the image's
  /// pixels, highest score first.
  std::vector<TeacherBox> detect(const cv::Mat& bgr, double score_threshold = 0.02,
                                 double nms_iou = -1);

  /// A training image as the student sees it (BGR, CV_32FC3 in 0..255, any size): placed at the
  /// canvas's top-left corner (shrunk to fit when larger), so that location (u, v) of stride s
  /// is the student's location (u, v) (both networks put it at (u*s, v*s)). `box_threshold`
  /// <= 0: no boxes.
  TeacherView dense(const cv::Mat& bgr_float, const std::vector<int>& strides,
                    double box_threshold = 0, double nms_iou = 0.45);

 private:
  // One stride's raw outputs on the canvas: per location and anchor, the score and the box's
  // corners in canvas pixels.
  struct Level {
    int stride = 0, rows = 0, cols = 0, anchors = 1;
    std::vector<float> scores;  // rows * cols * anchors
    std::vector<float> boxes;   // rows * cols * anchors * 4
  };
  std::vector<Level> forward(const cv::Mat& blob);
  cv::Mat blob_of(const cv::Mat& canvas) const;

  std::string path_;
  TeacherKind kind_ = TeacherKind::kYuNet;
  cv::dnn::Net net_;
  std::vector<std::string> outputs_;
};

}  // namespace autoassign
