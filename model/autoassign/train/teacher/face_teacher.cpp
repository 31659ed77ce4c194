// SPDX-License-Identifier: MIT
#include "autoassign/train/teacher/face_teacher.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include <opencv2/imgproc.hpp>

#include "autoassign/core/files.h"

namespace autoassign {

namespace {

constexpr int kStrides[] = {8, 16, 32};

// A DNN output as rows of its last dimension (face_peers.py's reshape(-1, shape[-1])).
std::pair<int, int> rows_cols(const cv::Mat& m) {
  const int last = m.dims >= 2 ? m.size[m.dims - 1] : 1;
  return {static_cast<int>(m.total() / static_cast<size_t>(last)), last};
}

std::vector<TeacherBox> nms(const std::vector<TeacherBox>& in, double iou) {
  // cv::dnn::NMSBoxes on (x, y, w, h) as face_peers.py calls it: kept indices, best first.
  std::vector<cv::Rect2d> rects;
  std::vector<float> scores;
  for (const auto& b : in) {
    rects.emplace_back(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1);
    scores.push_back(b.score);
  }
  std::vector<int> keep;
  cv::dnn::NMSBoxes(rects, scores, 0.0f, static_cast<float>(iou), keep, 1.0f, 5000);
  std::vector<TeacherBox> out;
  for (int k : keep) out.push_back(in[static_cast<size_t>(k)]);
  return out;
}

}  // namespace

FaceTeacher::FaceTeacher(const std::string& onnx_path) : path_(onnx_path) {
  if (const auto problem = regular_file_problem(onnx_path); !problem.empty()) {
    throw std::runtime_error("teacher " + onnx_path + ": " + problem);
  }
  try {
    net_ = cv::dnn::readNetFromONNX(onnx_path);
  } catch (const cv::Exception& e) {
    throw std::runtime_error("teacher " + onnx_path + ": OpenCV cannot load it as ONNX (" + e.msg +
                             ")");
  }
  if (net_.empty()) throw std::runtime_error("teacher " + onnx_path + ": an empty network");
  const auto names = net_.getUnconnectedOutLayersNames();
  const bool yunet = std::find(names.begin(), names.end(), "cls_8") != names.end();
  kind_ = yunet ? TeacherKind::kYuNet : TeacherKind::kScrfd;
  if (yunet) {
    for (const char* part : {"cls", "obj", "bbox"}) {
      for (int s : kStrides) outputs_.push_back(std::string(part) + "_" + std::to_string(s));
    }
  } else {
    outputs_.assign(names.begin(), names.end());
  }
  // One blank pass: the outputs must be those of a 640x640 YuNet or SCRFD (forward() checks
  // every one), and a file that loads but cannot run fails here rather than in a loader thread.
  try {
    forward(blob_of(cv::Mat::zeros(kCanvas, kCanvas, CV_32FC3)));
  } catch (const cv::Exception& e) {
    throw std::runtime_error("teacher " + onnx_path +
                             ": not a 640x640 YuNet or SCRFD face detector (it cannot run on a "
                             "640x640 image: " +
                             e.msg + ")");
  }
}

cv::Mat FaceTeacher::blob_of(const cv::Mat& canvas) const {
  // YuNet: BGR pixels as they are; SCRFD: RGB, (x - 127.5) / 128.
  if (kind_ == TeacherKind::kYuNet) return cv::dnn::blobFromImage(canvas);
  return cv::dnn::blobFromImage(canvas, 1.0 / 128, cv::Size(), cv::Scalar::all(127.5), true);
}

std::vector<FaceTeacher::Level> FaceTeacher::forward(const cv::Mat& blob) {
  net_.setInput(blob);
  std::vector<cv::Mat> outs;
  net_.forward(outs, outputs_);
  const auto bad = [&](const std::string& what) {
    return std::runtime_error("teacher " + path_ +
                              ": not a 640x640 YuNet or SCRFD face detector (" + what + ")");
  };
  std::vector<Level> levels;
  for (int i = 0; i < 3; ++i) {
    const int st = kStrides[i], side = kCanvas / st;
    Level L;
    L.stride = st;
    L.rows = L.cols = side;
    const size_t cells = static_cast<size_t>(side) * side;
    if (kind_ == TeacherKind::kYuNet) {
      const cv::Mat &cls = outs[i], &obj = outs[i + 3], &reg = outs[i + 6];
      if (cls.total() != cells || obj.total() != cells || reg.total() != 4 * cells) {
        throw bad(outputs_[i] + " has " + std::to_string(cls.total()) + " values, not " +
                  std::to_string(cells));
      }
      const auto *c = cls.ptr<float>(), *o = obj.ptr<float>(), *r = reg.ptr<float>();
      L.scores.resize(cells);
      L.boxes.resize(4 * cells);
      const float s = static_cast<float>(st);
      for (size_t k = 0; k < cells; ++k) {
        // face_peers.py's YuNet: centre = offset x stride + grid point, size = exp(wh) x stride.
        const float gx = static_cast<float>(k % side) * s, gy = static_cast<float>(k / side) * s;
        const float cx = r[4 * k] * s + gx, cy = r[4 * k + 1] * s + gy;
        const float w = std::exp(r[4 * k + 2]) * s, h = std::exp(r[4 * k + 3]) * s;
        L.scores[k] = c[k] * o[k];
        float* b = &L.boxes[4 * k];
        b[0] = cx - w / 2;
        b[1] = cy - h / 2;
        b[2] = cx + w / 2;
        b[3] = cy + h / 2;
      }
    } else {
      // SCRFD: two anchors per location; outputs told apart by shape, as face_peers.py does.
      L.anchors = 2;
      const int n = static_cast<int>(2 * cells);
      const cv::Mat *score = nullptr, *dist = nullptr;
      for (const auto& m : outs) {
        const auto [rows, cols] = rows_cols(m);
        if (rows == n && cols == 1) score = &m;
        if (rows == n && cols == 4) dist = &m;
      }
      if (!score || !dist) throw bad("no score and box outputs for stride " + std::to_string(st));
      const auto *sc = score->ptr<float>(), *d = dist->ptr<float>();
      L.scores.assign(sc, sc + n);
      L.boxes.resize(4 * static_cast<size_t>(n));
      const float s = static_cast<float>(st);
      for (int k = 0; k < n; ++k) {
        const int cell = k / 2;
        const float gx = static_cast<float>(cell % side) * s;
        const float gy = static_cast<float>(cell / side) * s;
        float* b = &L.boxes[4 * static_cast<size_t>(k)];
        b[0] = gx - d[4 * k] * s;
        b[1] = gy - d[4 * k + 1] * s;
        b[2] = gx + d[4 * k + 2] * s;
        b[3] = gy + d[4 * k + 3] * s;
      }
    }
    levels.push_back(std::move(L));
  }
  return levels;
}

std::vector<TeacherBox> FaceTeacher::detect(const cv::Mat& bgr, double score_threshold,
                                            double nms_iou) {
  if (bgr.empty() || bgr.type() != CV_8UC3) {
    throw std::invalid_argument("FaceTeacher::detect takes a non-empty BGR uint8 image");
  }
  const int S = kCanvas, h = bgr.rows, w = bgr.cols;
  // The letterbox and the map back to the image as face_peers.py computes them (its float32
  // arithmetic kept, so that the boxes agree to the last digits).
  cv::Mat canvas;
  if (kind_ == TeacherKind::kYuNet) {
    if (nms_iou < 0) nms_iou = 0.45;
    int nh, nw;
    if (static_cast<double>(h) / w > 1.0) {
      nh = S;
      nw = static_cast<int>(S / (static_cast<double>(h) / w));
    } else {
      nw = S;
      nh = static_cast<int>(S * (static_cast<double>(h) / w));
    }
    const float scale = static_cast<float>(static_cast<double>(nh) / h);
    canvas = cv::Mat::zeros(S, S, CV_8UC3);
    cv::Mat resized;
    cv::resize(bgr, resized, cv::Size(nw, nh));
    resized.copyTo(canvas(cv::Rect(0, 0, nw, nh)));
    std::vector<TeacherBox> cand;
    for (const auto& L : forward(blob_of(canvas))) {
      for (size_t k = 0; k < L.scores.size(); ++k) {
        if (!(L.scores[k] > score_threshold)) continue;
        const float* b = &L.boxes[4 * k];
        const float x1 = b[0] / scale, y1 = b[1] / scale, x2 = b[2] / scale, y2 = b[3] / scale;
        cand.push_back({x1, y1, x2, y2, L.scores[k]});
      }
    }
    return nms(cand, nms_iou);
  }
  if (nms_iou < 0) nms_iou = 0.4;
  int newh, neww, padw = 0, padh = 0;
  cv::Mat res;
  if (h > w) {
    newh = S;
    neww = static_cast<int>(S / (static_cast<double>(h) / w));
    cv::resize(bgr, res, cv::Size(neww, newh), 0, 0, cv::INTER_AREA);
    padw = static_cast<int>((S - neww) * 0.5);
    cv::copyMakeBorder(res, canvas, 0, 0, padw, S - neww - padw, cv::BORDER_CONSTANT, 0);
  } else {
    newh = std::min(S, static_cast<int>(S * (static_cast<double>(h) / w)) + 1);
    neww = S;
    cv::resize(bgr, res, cv::Size(neww, newh), 0, 0, cv::INTER_AREA);
    padh = static_cast<int>((S - newh) * 0.5);
    cv::copyMakeBorder(res, canvas, padh, S - newh - padh, 0, 0, cv::BORDER_CONSTANT, 0);
  }
  const float off_x = static_cast<float>(padw), off_y = static_cast<float>(padh);
  const float ratio_x = static_cast<float>(static_cast<double>(w) / neww);
  const float ratio_y = static_cast<float>(static_cast<double>(h) / newh);
  std::vector<TeacherBox> cand;
  for (const auto& L : forward(blob_of(canvas))) {
    for (size_t k = 0; k < L.scores.size(); ++k) {
      if (!(L.scores[k] > score_threshold)) continue;
      const float* b = &L.boxes[4 * k];
      const float x1 = (b[0] - off_x) * ratio_x, y1 = (b[1] - off_y) * ratio_y;
      const float bw = (b[2] - b[0]) * ratio_x, bh = (b[3] - b[1]) * ratio_y;
      cand.push_back({x1, y1, x1 + bw, y1 + bh, L.scores[k]});
    }
  }
  return nms(cand, nms_iou);
}

TeacherView FaceTeacher::dense(const cv::Mat& bgr_float, const std::vector<int>& strides,
                               double box_threshold, double nms_iou) {
  if (bgr_float.empty() || bgr_float.type() != CV_32FC3) {
    throw std::invalid_argument("FaceTeacher::dense takes a non-empty BGR float image");
  }
  const int H = bgr_float.rows, W = bgr_float.cols;
  const double scale = std::min(1.0, static_cast<double>(kCanvas) / std::max(H, W));
  cv::Mat canvas = cv::Mat::zeros(kCanvas, kCanvas, CV_32FC3);
  int sw = W, sh = H;
  if (scale < 1) {
    sw = std::clamp(static_cast<int>(std::lround(W * scale)), 1, kCanvas);
    sh = std::clamp(static_cast<int>(std::lround(H * scale)), 1, kCanvas);
    cv::Mat small;
    cv::resize(bgr_float, small, cv::Size(sw, sh));
    small.copyTo(canvas(cv::Rect(0, 0, sw, sh)));
  } else {
    bgr_float.copyTo(canvas(cv::Rect(0, 0, W, H)));
  }
  const auto levels = forward(blob_of(canvas));
  TeacherView view;
  for (int s : strides) {
    const auto L =
        std::find_if(levels.begin(), levels.end(), [s](const Level& l) { return l.stride == s; });
    if (L == levels.end()) {
      view.scores.emplace_back();
      continue;
    }
    // The best anchor's score per location, over the locations the (shrunk) image covers,
    // then onto the student's locations of the image at its own size.
    cv::Mat full(L->rows, L->cols, CV_32F);
    for (int k = 0; k < L->rows * L->cols; ++k) {
      float best = 0;
      for (int a = 0; a < L->anchors; ++a) best = std::max(best, L->scores[k * L->anchors + a]);
      full.at<float>(k / L->cols, k % L->cols) = best;
    }
    const int rows = (H + s - 1) / s, cols = (W + s - 1) / s;
    cv::Mat map;
    if (scale < 1) {
      const int r = std::min(L->rows, (sh + s - 1) / s), c = std::min(L->cols, (sw + s - 1) / s);
      cv::resize(full(cv::Rect(0, 0, c, r)), map, cv::Size(cols, rows));
    } else {
      map = full(cv::Rect(0, 0, cols, rows)).clone();
    }
    view.scores.push_back(torch::from_blob(map.ptr<float>(), {rows, cols}, torch::kFloat).clone());
  }
  if (box_threshold > 0) {
    std::vector<TeacherBox> cand;
    const float inv = static_cast<float>(1.0 / scale);
    for (const auto& L : levels) {
      for (size_t k = 0; k < L.scores.size(); ++k) {
        if (!(L.scores[k] >= box_threshold)) continue;
        const float* b = &L.boxes[4 * k];
        cand.push_back({b[0] * inv, b[1] * inv, b[2] * inv, b[3] * inv, L.scores[k]});
      }
    }
    view.boxes = nms(cand, nms_iou);
  }
  return view;
}

}  // namespace autoassign
