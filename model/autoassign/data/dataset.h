// SPDX-License-Identifier: MIT
// Annotated image sets in their own formats: WIDER FACE (official txt), COCO (instances JSON)
// and Pascal VOC (XML folder). Torch-free: a dataset is a list of image paths with boxes.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace autoassign {

struct Annotation {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;  ///< pixels of the original image
  int label = 0;                         ///< contiguous 0..K-1
  /// Not a training target and not counted in evaluation (COCO crowd, WIDER invalid).
  bool ignore = false;
  /// Object area for COCO's small/medium/large ranges (COCO's own `area`, the segment's);
  /// < 0: use the box's.
  float area = -1;
};

struct Sample {
  std::string image;     ///< path of the image file
  std::string key;       ///< dataset-relative name ("0--Parade/0_Parade_..." for WIDER)
  int64_t image_id = 0;  ///< COCO image id, else the index
  std::vector<Annotation> objects;
};

struct Dataset {
  std::string name;
  std::vector<std::string> class_names;
  std::vector<Sample> samples;
  /// What the loader skipped where the dataset's own tools skip, with counts, e.g.
  /// "boxes with zero width or height": 12.
  std::map<std::string, int> skipped;

  /// Appends another dataset whose class names are the same (by name; else throws).
  void append(const Dataset& other);
  std::string summary() const;
};

/// WIDER FACE: `root` holds wider_face_split/wider_face_{split}_bbx_gt.txt and
/// WIDER_{split}/images/. Faces marked invalid are kept as ignored; boxes with w or h <= 0
/// are skipped and counted (the official tools drop them too). Malformed lines throw
/// std::runtime_error naming the file and line; a missing image file too.
Dataset load_widerface(const std::string& root, const std::string& split);

/// COCO instances JSON: category ids are mapped to contiguous labels in id order with their
/// names; crowd boxes are kept as ignored; boxes with w or h <= 0 are skipped and counted.
Dataset load_coco(const std::string& annotation_json, const std::string& images_dir);

/// Pascal VOC: `dir` holds annotations/*.xml and images/ (or JPEGImages/). `class_map` maps
/// VOC names to output names (e.g. three face-mask classes to "face"); names absent from a
/// non-empty map are skipped and counted. "difficult" objects are kept as ignored.
Dataset load_voc(const std::string& dir, const std::map<std::string, std::string>& class_map);

/// Parses "a=x,b=x,c=y" into a class map; throws naming a malformed entry.
std::map<std::string, std::string> parse_class_map(const std::string& text);

/// The datasets a training or evaluation run names, by their flags (--widerface, --coco with
/// --coco-images, --voc with --class-map), concatenated in that order.
struct DatasetSources {
  std::string widerface, widerface_split = "train";
  std::string coco, coco_images;
  std::string voc, class_map;
  int max_images = 0;  ///< keep only the first N images (0 = all)
};

/// Loads and concatenates `sources`; throws std::invalid_argument when none is named or COCO
/// lacks its image folder, and what each reader throws for a bad dataset.
Dataset load_datasets(const DatasetSources& sources);

}  // namespace autoassign
