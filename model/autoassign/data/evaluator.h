// SPDX-License-Identifier: MIT
// Evaluation: COCO-style AP (pycocotools' protocol) and the official WIDER FACE protocol
// (eval_tools: read_pred, norm_score, evaluation, boxoverlap, VOCap). Torch-free.
#pragma once

#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autoassign/data/dataset.h"

namespace autoassign {

// ---- COCO ----------------------------------------------------------------------------------

struct CocoDetection {
  int64_t image_id = 0;  ///< Sample::image_id
  int label = 0;
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float score = 0;
};

struct CocoResult {
  /// -1 where nothing can be measured (no ground truth in that range).
  double ap = -1, ap50 = -1, ap75 = -1, ap_small = -1, ap_medium = -1, ap_large = -1;
  double ar100 = -1;
  int images = 0;
};

/// AP over IoU 0.50:0.05:0.95 with 101-point interpolated precision, maxDets 100 per image
/// and class, areas small < 32^2 <= medium < 96^2 <= large (box areas), crowd/ignored gts
/// matched without counting (IoU against a crowd box = intersection / detection area), as
/// pycocotools COCOeval. Images are the dataset's samples.
CocoResult evaluate_coco(const Dataset& ground_truth, const std::vector<CocoDetection>& detections);

// ---- WIDER FACE ----------------------------------------------------------------------------

struct WiderGroundTruth {
  struct Image {
    std::vector<std::array<double, 4>> boxes;  ///< x, y, w, h
    std::array<std::vector<int>, 3> keep;      ///< easy, medium, hard: 1-based gt indices
  };
  std::map<std::string, std::map<std::string, Image>> events;  ///< event -> image name -> gt
};

/// Reads wider_face_val.mat and wider_{easy,medium,hard}_val.mat from `dir` (libmatio);
/// throws naming the file and what is missing or misaligned.
WiderGroundTruth load_wider_ground_truth(const std::string& dir);

/// (event, image name) -> boxes (x, y, w, h, score).
using WiderPredictions =
    std::map<std::pair<std::string, std::string>, std::vector<std::array<double, 5>>>;

/// Reads PRED_DIR/<event>/<image>.txt (name line, count line, "x y w h score" lines) for the
/// events present in `gt`; throws naming the file and line of a malformed one.
WiderPredictions read_wider_predictions(const std::string& dir, const WiderGroundTruth& gt);
/// Writes one prediction file in that layout (creating its folder).
void write_wider_prediction(const std::string& path, const std::string& image_name,
                            const std::vector<std::array<double, 5>>& boxes);

struct WiderResult {
  std::array<double, 3> ap{-1, -1, -1};  ///< easy, medium, hard; -1 with no faces
  std::array<int, 3> faces{0, 0, 0};
  std::array<double, 3> max_recall{0, 0, 0};
  int images = 0;
  int boxes = 0;
};

/// The official protocol over the images that have predictions (faces counted from those
/// images only). Scores are min-max normalised over all predictions (all equal -> 1).
WiderResult evaluate_wider(const WiderGroundTruth& gt, WiderPredictions predictions,
                           double iou_threshold = 0.5);

}  // namespace autoassign
