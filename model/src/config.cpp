// SPDX-License-Identifier: MIT
// ModelConfig <-> JSON, presets, validation.
#include "autoassign/config.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "presets.h"

namespace autoassign {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::invalid_argument(source + ": " + what);
}

// Reads `key` of `obj` into `out` when present; a wrong type names the key.
template <typename T>
void get(const json& obj, const char* key, T& out, const std::string& source,
         const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) return;
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    fail(source, "key '" + path + key + "' has a value of the wrong type: " + it->dump());
  }
}

void check_keys(const json& obj, const std::set<std::string>& known, const std::string& source,
                const std::string& path) {
  if (!obj.is_object()) fail(source, "'" + path + "' must be a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!known.count(it.key())) fail(source, "unknown key '" + path + it.key() + "'");
  }
}

}  // namespace

std::vector<int> ModelConfig::strides() const {
  std::vector<int> s;
  for (int level : fpn.levels) s.push_back(1 << level);
  return s;
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  check_keys(j,
             {"name", "description", "num_classes", "class_names", "backbone", "fpn", "head",
              "input", "postprocess", "train"},
             source, "");
  ModelConfig c;
  get(j, "name", c.name, source, "");
  get(j, "num_classes", c.num_classes, source, "");
  get(j, "class_names", c.class_names, source, "");
  if (j.contains("backbone")) {
    const json& b = j["backbone"];
    check_keys(b, {"type", "norm", "freeze_at", "channels", "blocks", "reparam"}, source,
               "backbone.");
    get(b, "type", c.backbone.type, source, "backbone.");
    get(b, "norm", c.backbone.norm, source, "backbone.");
    get(b, "freeze_at", c.backbone.freeze_at, source, "backbone.");
    get(b, "channels", c.backbone.channels, source, "backbone.");
    get(b, "blocks", c.backbone.blocks, source, "backbone.");
    get(b, "reparam", c.backbone.reparam, source, "backbone.");
  }
  if (j.contains("fpn")) {
    const json& f = j["fpn"];
    check_keys(f, {"channels", "levels"}, source, "fpn.");
    get(f, "channels", c.fpn.channels, source, "fpn.");
    get(f, "levels", c.fpn.levels, source, "fpn.");
  }
  if (j.contains("head")) {
    const json& h = j["head"];
    check_keys(h, {"channels", "num_convs", "norm", "gn_groups", "share_tower", "reparam"}, source,
               "head.");
    get(h, "channels", c.head.channels, source, "head.");
    get(h, "num_convs", c.head.num_convs, source, "head.");
    get(h, "norm", c.head.norm, source, "head.");
    get(h, "gn_groups", c.head.gn_groups, source, "head.");
    get(h, "share_tower", c.head.share_tower, source, "head.");
    get(h, "reparam", c.head.reparam, source, "head.");
  }
  if (j.contains("input")) {
    const json& i = j["input"];
    check_keys(i,
               {"resize", "short_side", "long_side", "width", "height", "size_divisor",
                "channel_order", "mean", "std"},
               source, "input.");
    get(i, "resize", c.input.resize, source, "input.");
    get(i, "short_side", c.input.short_side, source, "input.");
    get(i, "long_side", c.input.long_side, source, "input.");
    get(i, "width", c.input.width, source, "input.");
    get(i, "height", c.input.height, source, "input.");
    get(i, "size_divisor", c.input.size_divisor, source, "input.");
    get(i, "channel_order", c.input.channel_order, source, "input.");
    get(i, "mean", c.input.mean, source, "input.");
    get(i, "std", c.input.std, source, "input.");
  }
  if (j.contains("postprocess")) {
    const json& p = j["postprocess"];
    check_keys(p, {"score_threshold", "nms_iou", "topk_per_level", "max_detections"}, source,
               "postprocess.");
    get(p, "score_threshold", c.postprocess.score_threshold, source, "postprocess.");
    get(p, "nms_iou", c.postprocess.nms_iou, source, "postprocess.");
    get(p, "topk_per_level", c.postprocess.topk_per_level, source, "postprocess.");
    get(p, "max_detections", c.postprocess.max_detections, source, "postprocess.");
  }
  if (c.class_names.empty()) {
    for (int k = 0; k < c.num_classes; ++k) c.class_names.push_back("class" + std::to_string(k));
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    fail(source, e.what());
  }
  return c;
}

std::string ModelConfig::to_json(int indent) const {
  json j;
  j["name"] = name;
  j["num_classes"] = num_classes;
  j["class_names"] = class_names;
  j["backbone"] = {{"type", backbone.type},
                   {"norm", backbone.norm},
                   {"freeze_at", backbone.freeze_at},
                   {"channels", backbone.channels},
                   {"blocks", backbone.blocks},
                   {"reparam", backbone.reparam}};
  j["fpn"] = {{"channels", fpn.channels}, {"levels", fpn.levels}};
  j["head"] = {{"channels", head.channels},
               {"num_convs", head.num_convs},
               {"norm", head.norm},
               {"gn_groups", head.gn_groups},
               {"share_tower", head.share_tower},
               {"reparam", head.reparam}};
  j["input"] = {{"resize", input.resize},
                {"short_side", input.short_side},
                {"long_side", input.long_side},
                {"width", input.width},
                {"height", input.height},
                {"size_divisor", input.size_divisor},
                {"channel_order", input.channel_order},
                {"mean", input.mean},
                {"std", input.std}};
  j["postprocess"] = {{"score_threshold", postprocess.score_threshold},
                      {"nms_iou", postprocess.nms_iou},
                      {"topk_per_level", postprocess.topk_per_level},
                      {"max_detections", postprocess.max_detections}};
  return j.dump(indent);
}

void ModelConfig::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (num_classes < 1) bad("num_classes must be >= 1, got " + std::to_string(num_classes));
  if (static_cast<int>(class_names.size()) != num_classes) {
    bad("class_names has " + std::to_string(class_names.size()) + " entries but num_classes is " +
        std::to_string(num_classes));
  }
  static const std::set<std::string> kBackbones = {"resnet18", "resnet34", "resnet50", "fast"};
  if (!kBackbones.count(backbone.type)) {
    bad("backbone.type '" + backbone.type + "' is not one of resnet18, resnet34, resnet50, fast");
  }
  static const std::set<std::string> kNorms = {"frozen_bn", "bn", "gn"};
  if (!kNorms.count(backbone.norm)) {
    bad("backbone.norm '" + backbone.norm + "' is not one of frozen_bn, bn, gn");
  }
  if (backbone.freeze_at < 0 || backbone.freeze_at > 5) {
    bad("backbone.freeze_at must be in 0..5, got " + std::to_string(backbone.freeze_at));
  }
  if (backbone.type == "fast") {
    if (backbone.channels.size() != 5) bad("backbone.channels must have 5 entries for 'fast'");
    if (backbone.blocks.size() != 4) bad("backbone.blocks must have 4 entries for 'fast'");
    for (int c : backbone.channels) {
      if (c < 1) bad("backbone.channels entries must be >= 1");
    }
    for (int b : backbone.blocks) {
      if (b < 0) bad("backbone.blocks entries must be >= 0");
    }
  }
  if (backbone.reparam && (backbone.type != "fast" || backbone.norm != "bn")) {
    bad("backbone.reparam needs backbone.type 'fast' and backbone.norm 'bn'");
  }
  if (head.reparam && head.norm != "bn") bad("head.reparam needs head.norm 'bn'");
  if (fpn.levels.empty()) bad("fpn.levels must not be empty");
  for (size_t i = 0; i < fpn.levels.size(); ++i) {
    if (fpn.levels[i] != 3 + static_cast<int>(i) || fpn.levels[i] > 7) {
      bad("fpn.levels must be a contiguous range starting at 3 and ending at most at 7");
    }
  }
  if (fpn.channels < 1) bad("fpn.channels must be >= 1");
  if (head.channels != fpn.channels) {
    bad("head.channels (" + std::to_string(head.channels) + ") must equal fpn.channels (" +
        std::to_string(fpn.channels) + ")");
  }
  if (head.num_convs < 0) bad("head.num_convs must be >= 0");
  if (head.norm != "gn" && head.norm != "bn" && head.norm != "none") {
    bad("head.norm '" + head.norm + "' is not one of gn, bn, none");
  }
  if (head.norm == "gn" && (head.gn_groups < 1 || head.channels % head.gn_groups != 0)) {
    bad("head.gn_groups (" + std::to_string(head.gn_groups) + ") must divide head.channels");
  }
  if (input.resize == "short_long") {
    if (input.short_side < 1 || input.long_side < input.short_side) {
      bad("input.short_side/long_side must satisfy 1 <= short_side <= long_side");
    }
  } else if (input.resize == "fit") {
    if (input.width < 1 || input.height < 1) bad("input.width and input.height must be >= 1");
    if (input.width % input.size_divisor || input.height % input.size_divisor) {
      bad("input.width and input.height must be multiples of input.size_divisor");
    }
  } else {
    bad("input.resize '" + input.resize + "' is not one of short_long, fit");
  }
  const int max_stride = 1 << fpn.levels.back();
  if (input.size_divisor < 1 || input.size_divisor % std::min(max_stride, 32) != 0) {
    bad("input.size_divisor must be a positive multiple of " +
        std::to_string(std::min(max_stride, 32)));
  }
  if (input.channel_order != "BGR" && input.channel_order != "RGB") {
    bad("input.channel_order '" + input.channel_order + "' is not one of BGR, RGB");
  }
  for (float s : input.std) {
    if (!(s > 0)) bad("input.std entries must be > 0");
  }
  if (!(postprocess.score_threshold >= 0 && postprocess.score_threshold <= 1)) {
    bad("postprocess.score_threshold must be in [0, 1]");
  }
  if (!(postprocess.nms_iou > 0 && postprocess.nms_iou <= 1)) {
    bad("postprocess.nms_iou must be in (0, 1]");
  }
  if (postprocess.topk_per_level < 1) bad("postprocess.topk_per_level must be >= 1");
  if (postprocess.max_detections < 1) bad("postprocess.max_detections must be >= 1");
}

ModelConfig ModelConfig::preset(const std::string& name) {
  for (const auto& p : embedded_presets()) {
    if (name == p.name) return from_json(p.json, "preset '" + name + "'");
  }
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown preset '" + name + "' (known: " + known + ")");
}

std::vector<std::string> ModelConfig::preset_names() {
  std::vector<std::string> names;
  for (const auto& p : embedded_presets()) names.push_back(p.name);
  return names;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

}  // namespace autoassign
