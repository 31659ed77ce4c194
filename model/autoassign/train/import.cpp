// SPDX-License-Identifier: MIT
#include "autoassign/train/import.h"

#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "autoassign/core/torch_checkpoint.h"
#include "autoassign/infer/checkpoint.h"

namespace autoassign {

namespace {

std::vector<std::string> split(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  return parts;
}

std::string join(const std::vector<std::string>& parts, size_t from) {
  std::string s;
  for (size_t i = from; i < parts.size(); ++i) s += (s.empty() ? "" : ".") + parts[i];
  return s;
}

// A small non-negative decimal index, or -1.
int index_of(const std::string& s) {
  if (s.empty() || s.size() > 3) return -1;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
  }
  return std::stoi(s);
}

[[noreturn]] void unknown(const std::string& key) {
  throw std::invalid_argument("unknown key '" + key + "'");
}

// torchvision / MMDetection ResNet names below the backbone prefix: conv1, bn1,
// layerS.B.{convK, bnK, downsample.0, downsample.1}.
std::string resnet_key(const std::vector<std::string>& p, const std::string& key) {
  if (p.size() == 2 && p[0] == "conv1") return "backbone.stem.0." + p[1];
  if (p.size() == 2 && p[0] == "bn1") return "backbone.stem.0.norm." + p[1];
  if (p.size() >= 4 && p[0].rfind("layer", 0) == 0) {
    const int stage = index_of(p[0].substr(5)), block = index_of(p[1]);
    if (stage < 1 || stage > 4 || block < 0) unknown(key);
    const std::string unit = "backbone.res" + std::to_string(stage + 1) + "." + p[1] + ".";
    if (p.size() == 4 && p[2].rfind("conv", 0) == 0) return unit + p[2] + "." + p[3];
    if (p.size() == 4 && p[2].rfind("bn", 0) == 0) {
      return unit + "conv" + p[2].substr(2) + ".norm." + p[3];
    }
    if (p.size() == 5 && p[2] == "downsample" && p[3] == "0") return unit + "shortcut." + p[4];
    if (p.size() == 5 && p[2] == "downsample" && p[3] == "1") {
      return unit + "shortcut.norm." + p[4];
    }
  }
  unknown(key);
}

std::string mmdet_key(const std::string& key, int* level) {
  const auto p = split(key);
  if (p.size() < 2) unknown(key);
  if (p[0] == "backbone") return resnet_key(std::vector<std::string>(p.begin() + 1, p.end()), key);
  if (p[0] == "neck" && p.size() == 5 && p[3] == "conv") {
    const int i = index_of(p[2]);
    if (p[1] == "lateral_convs" && i >= 0 && i <= 2) {
      return "fpn.lateral" + std::to_string(i + 3) + "." + p[4];
    }
    if (p[1] == "fpn_convs" && i >= 0 && i <= 2) {
      return "fpn.output" + std::to_string(i + 3) + "." + p[4];
    }
    if (p[1] == "fpn_convs" && i == 3) return "fpn.p6." + p[4];
    if (p[1] == "fpn_convs" && i == 4) return "fpn.p7." + p[4];
  }
  if (p[0] == "bbox_head") {
    if ((p[1] == "cls_convs" || p[1] == "reg_convs") && p.size() == 5 && index_of(p[2]) >= 0) {
      const std::string tower = p[1] == "cls_convs" ? "head.cls_tower." : "head.reg_tower.";
      if (p[3] == "conv") return tower + p[2] + "." + p[4];
      if (p[3] == "gn") return tower + p[2] + ".norm." + p[4];
    }
    static const std::map<std::string, std::string> predictors = {
        {"conv_cls", "head.cls_pred"},
        {"conv_reg", "head.reg_pred"},
        {"conv_centerness", "head.obj_pred"}};
    if (p.size() == 3 && predictors.count(p[1])) return predictors.at(p[1]) + "." + p[2];
    if (p.size() == 4 && p[1] == "scales" && p[3] == "scale" && index_of(p[2]) >= 0) {
      *level = index_of(p[2]);
      return "head.scales";
    }
    if (p.size() == 3 && p[1] == "center_prior" && p[2] == "mean") return "center_prior.mu";
    if (p.size() == 3 && p[1] == "center_prior" && p[2] == "sigma") return "center_prior.sigma";
  }
  unknown(key);
}

std::string cvpods_key(std::string key, int* level) {
  const std::string original = key;
  if (key.rfind("module.", 0) == 0) key = key.substr(7);  // saved from DistributedDataParallel
  if (key == "mu" || key == "sigma") return "center_prior." + key;
  const auto p = split(key);
  if (p.size() < 3) unknown(original);
  if (p[0] == "backbone" && p[1] == "bottom_up") {
    if (p.size() >= 4 && p[2] == "stem" && p[3] == "conv1") {
      return "backbone.stem.0" + std::string(p.size() > 4 ? "." : "") + join(p, 4);
    }
    if (p[2].rfind("res", 0) == 0) return "backbone." + join(p, 2);
  }
  if (p[0] == "backbone" && p.size() == 3) {
    for (const char* kind : {"lateral", "output"}) {
      const std::string prefix = std::string("fpn_") + kind;
      if (p[1].rfind(prefix, 0) == 0) {
        const int l = index_of(p[1].substr(prefix.size()));
        if (l >= 3 && l <= 5) return "fpn." + std::string(kind) + std::to_string(l) + "." + p[2];
      }
    }
  }
  if (p[0] == "backbone" && p.size() == 4 && p[1] == "top_block" &&
      (p[2] == "p6" || p[2] == "p7")) {
    return "fpn." + p[2] + "." + p[3];
  }
  if (p[0] == "head") {
    if ((p[1] == "cls_subnet" || p[1] == "bbox_subnet") && p.size() == 4) {
      const int j = index_of(p[2]);
      const std::string tower = p[1] == "cls_subnet" ? "head.cls_tower." : "head.reg_tower.";
      if (j >= 0 && j % 3 == 0) return tower + std::to_string(j / 3) + "." + p[3];
      if (j >= 0 && j % 3 == 1) return tower + std::to_string(j / 3) + ".norm." + p[3];
    }
    static const std::map<std::string, std::string> predictors = {{"cls_score", "head.cls_pred"},
                                                                  {"bbox_pred", "head.reg_pred"},
                                                                  {"obj_score", "head.obj_pred"}};
    if (p.size() == 3 && predictors.count(p[1])) return predictors.at(p[1]) + "." + p[2];
    if (p.size() == 4 && p[1] == "scales" && p[3] == "scale" && index_of(p[2]) >= 0) {
      *level = index_of(p[2]);
      return "head.scales";
    }
  }
  unknown(original);
}

std::string shape_text(at::IntArrayRef s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

ImportSource parse_import_source(const std::string& name) {
  if (name == "mmdet") return ImportSource::kMmdet;
  if (name == "cvpods") return ImportSource::kCvpods;
  if (name == "torchvision") return ImportSource::kTorchvision;
  throw std::invalid_argument("--from must be mmdet, cvpods or torchvision, not '" + name + "'");
}

std::string import_key(ImportSource from, const std::string& key, int* level) {
  *level = -1;
  const auto last = key.substr(key.rfind('.') + 1);
  // BatchNorm's batch counter: frozen BN has none, and it holds no weight.
  if (last == "num_batches_tracked") return "";
  switch (from) {
    case ImportSource::kMmdet:
      return mmdet_key(key, level);
    case ImportSource::kCvpods:
      return cvpods_key(key, level);
    case ImportSource::kTorchvision:
      if (key.rfind("fc.", 0) == 0) return "";  // the ImageNet classifier
      return resnet_key(split(key), key);
  }
  unknown(key);
}

namespace {

// "prefix<N>rest" -> N when `s` starts with prefix and a number follows; -1 otherwise.
int number_after(const std::string& s, const std::string& prefix, size_t* end) {
  if (s.rfind(prefix, 0) != 0) return -1;
  size_t i = prefix.size();
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == prefix.size()) return -1;
  *end = i;
  return std::stoi(s.substr(prefix.size(), i - prefix.size()));
}

// The ResNet part (torchvision / MMDetection names) of a library backbone name, or "".
std::string resnet_source(const std::string& name) {
  const std::string b = "backbone.";
  if (name.rfind(b + "stem.0.norm.", 0) == 0) return "bn1." + name.substr(b.size() + 12);
  if (name.rfind(b + "stem.0.", 0) == 0) return "conv1." + name.substr(b.size() + 7);
  size_t end = 0;
  const int stage = number_after(name, b + "res", &end);
  if (stage < 2 || stage > 5 || end >= name.size() || name[end] != '.') return "";
  auto p = split(name.substr(end + 1));  // block, unit, ...
  if (p.size() < 3) return "";
  const std::string unit = "layer" + std::to_string(stage - 1) + "." + p[0] + ".";
  if (p[1] == "shortcut") {
    return p[2] == "norm" && p.size() == 4 ? unit + "downsample.1." + p[3]
                                           : unit + "downsample.0." + join(p, 2);
  }
  if (p[1].rfind("conv", 0) == 0) {
    return p[2] == "norm" && p.size() == 4 ? unit + "bn" + p[1].substr(4) + "." + p[3]
                                           : unit + p[1] + "." + join(p, 2);
  }
  return "";
}

std::string mmdet_source(const std::string& name) {
  if (name.rfind("backbone.", 0) == 0) {
    const std::string r = resnet_source(name);
    return r.empty() ? "" : "backbone." + r;
  }
  const auto p = split(name);
  size_t end = 0;
  if (p.size() == 3 && p[0] == "fpn") {
    if (int l = number_after(p[1], "lateral", &end); l >= 3) {
      return "neck.lateral_convs." + std::to_string(l - 3) + ".conv." + p[2];
    }
    if (int l = number_after(p[1], "output", &end); l >= 3) {
      return "neck.fpn_convs." + std::to_string(l - 3) + ".conv." + p[2];
    }
    if (p[1] == "p6" || p[1] == "p7") {
      return "neck.fpn_convs." + std::string(p[1] == "p6" ? "3" : "4") + ".conv." + p[2];
    }
  }
  if (p.size() >= 4 && p[0] == "head" && (p[1] == "cls_tower" || p[1] == "reg_tower")) {
    const std::string t = p[1] == "cls_tower" ? "bbox_head.cls_convs." : "bbox_head.reg_convs.";
    return p[3] == "norm" && p.size() == 5 ? t + p[2] + ".gn." + p[4] : t + p[2] + ".conv." + p[3];
  }
  static const std::map<std::string, std::string> predictors = {
      {"cls_pred", "conv_cls"}, {"reg_pred", "conv_reg"}, {"obj_pred", "conv_centerness"}};
  if (p.size() == 3 && p[0] == "head" && predictors.count(p[1])) {
    return "bbox_head." + predictors.at(p[1]) + "." + p[2];
  }
  if (name == "center_prior.mu") return "bbox_head.center_prior.mean";
  if (name == "center_prior.sigma") return "bbox_head.center_prior.sigma";
  return "";
}

std::string cvpods_source(const std::string& name) {
  if (name.rfind("backbone.stem.0", 0) == 0) {
    return "backbone.bottom_up.stem.conv1" + name.substr(15);
  }
  if (name.rfind("backbone.res", 0) == 0) return "backbone.bottom_up." + name.substr(9);
  const auto p = split(name);
  if (p.size() == 3 && p[0] == "fpn") {
    if (p[1] == "p6" || p[1] == "p7") return "backbone.top_block." + p[1] + "." + p[2];
    return "backbone.fpn_" + p[1] + "." + p[2];
  }
  if (p.size() >= 4 && p[0] == "head" && (p[1] == "cls_tower" || p[1] == "reg_tower")) {
    const int j = index_of(p[2]);
    if (j < 0) return "";
    const std::string t = p[1] == "cls_tower" ? "head.cls_subnet." : "head.bbox_subnet.";
    return p[3] == "norm" && p.size() == 5 ? t + std::to_string(3 * j + 1) + "." + p[4]
                                           : t + std::to_string(3 * j) + "." + p[3];
  }
  static const std::map<std::string, std::string> predictors = {
      {"cls_pred", "cls_score"}, {"reg_pred", "bbox_pred"}, {"obj_pred", "obj_score"}};
  if (p.size() == 3 && p[0] == "head" && predictors.count(p[1])) {
    return "head." + predictors.at(p[1]) + "." + p[2];
  }
  if (name == "center_prior.mu") return "mu";
  if (name == "center_prior.sigma") return "sigma";
  return "";
}

}  // namespace

std::string source_key(ImportSource from, const std::string& name) {
  std::string key = from == ImportSource::kMmdet    ? mmdet_source(name)
                    : from == ImportSource::kCvpods ? cvpods_source(name)
                                                    : resnet_source(name);
  if (key.empty()) return "";
  // Only what the forward mapping agrees with.
  try {
    int level = -1;
    return import_key(from, key, &level) == name ? key : "";
  } catch (const std::invalid_argument&) {
    return "";
  }
}

AutoAssign import_checkpoint(const std::string& path, const ImportOptions& options,
                             ImportReport* report) {
  const auto ck = TorchCheckpoint::load(path);
  const auto state = ck.state_dict();
  auto fail = [&](const std::string& what) -> void {
    throw std::invalid_argument(path + ": " + what);
  };
  ModelConfig config = options.config;
  const std::string architecture = config.name;
  *report = ImportReport{};
  report->keys = state.size();
  // Each key's library name, once: an empty name is dropped by design, an unknown key keeps its
  // error for the problem list below.
  struct Mapped {
    std::string name, error;
    int level = -1;
  };
  std::vector<Mapped> mapped(state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    try {
      mapped[i].name = import_key(options.from, state[i].first, &mapped[i].level);
    } catch (const std::invalid_argument& e) {
      mapped[i].error = e.what();
    }
    // The class count from the classifier, when the checkpoint has one.
    const auto& shape = state[i].second.shape;
    if (mapped[i].name == "head.cls_pred.weight" && !shape.empty()) {
      config.num_classes = static_cast<int>(shape[0]);
    }
  }
  if (!options.class_names.empty()) {
    if (static_cast<int>(options.class_names.size()) != config.num_classes) {
      fail("--classes names " + std::to_string(options.class_names.size()) +
           " classes; the checkpoint's classifier has " + std::to_string(config.num_classes));
    }
    config.class_names = options.class_names;
  } else if (static_cast<int>(config.class_names.size()) != config.num_classes) {
    fail("the checkpoint's classifier has " + std::to_string(config.num_classes) +
         " classes and the config names " + std::to_string(config.class_names.size()) +
         ": give their names with --classes FILE (one per line)");
  }
  switch (options.from) {
    case ImportSource::kMmdet:
      // MMDetection's AutoAssign config: caffe-style ResNet on BGR 0..255 with its own mean.
      config.input.channel_order = "BGR";
      config.input.mean = {102.9801f, 115.9465f, 122.7717f};
      config.input.std = {1.0f, 1.0f, 1.0f};
      config.name += "-mmdet";
      config.postprocess.order = "mmdet";  // what its published AP was measured with
      break;
    case ImportSource::kCvpods:
      config.input.channel_order = "BGR";
      config.input.mean = {103.53f, 116.28f, 123.675f};
      config.input.std = {1.0f, 1.0f, 1.0f};
      config.name += "-cvpods";
      config.postprocess.order = "cvpods";
      break;
    case ImportSource::kTorchvision:
      // torchvision's ImageNet normalisation, in 0..255 units, RGB.
      config.input.channel_order = "RGB";
      config.input.mean = {123.675f, 116.28f, 103.53f};
      config.input.std = {58.395f, 57.12f, 57.375f};
      config.name += "-torchvision";
      if (config.backbone.norm == "gn") config.backbone.norm = "frozen_bn";
      // torchvision's bottleneck strides in its 3x3: the same network only with that choice.
      config.backbone.stride_in_1x1 = false;
      break;
  }
  if (!options.post.empty()) config.postprocess.order = options.post;
  if (options.from == ImportSource::kMmdet && config.postprocess.order != "mmdet") {
    report->notes.push_back(
        "post-processing follows the authors' order (top-k on cls x obj, then the threshold), "
        "not MMDetection 2.12's with which its AP was measured (threshold on cls alone): "
        "detections near the 0.05 threshold can differ");
  }
  config.validate();
  AutoAssign model(config);
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : model->named_parameters()) targets[item.key()] = item.value();
  for (const auto& item : model->named_buffers()) targets[item.key()] = item.value();
  std::set<std::string> filled;
  std::vector<std::string> problems;
  std::map<int, torch::Tensor> scales;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& [key, ref] = state[i];
    const std::string& name = mapped[i].name;
    const int level = mapped[i].level;
    if (!mapped[i].error.empty()) {
      problems.push_back(mapped[i].error + " (not part of a " +
                         (options.from == ImportSource::kTorchvision ? "ResNet" : "AutoAssign") +
                         " checkpoint of this layout)");
      continue;
    }
    if (name.empty()) {
      report->dropped.push_back(key);
      continue;
    }
    torch::Tensor value = torch_tensor(ck, ref);
    if (name == "head.scales") {
      if (value.numel() != 1) {
        problems.push_back("'" + key + "' has shape " + shape_text(value.sizes()) +
                           ", a level scale is one number");
        continue;
      }
      if (scales.count(level))
        problems.push_back("level scale " + std::to_string(level) + " twice");
      scales[level] = value.reshape({});
      continue;
    }
    auto it = targets.find(name);
    if (it == targets.end()) {
      problems.push_back("'" + key + "' (" + name + ") has no counterpart in the " + architecture +
                         " model");
      continue;
    }
    torch::Tensor& target = it->second;
    if (name == "center_prior.mu" || name == "center_prior.sigma") {
      // cvpods hard-codes [80, 2] whatever the class count; only the first K rows are used.
      if (value.dim() == 2 && value.size(0) > target.size(0) && value.size(1) == target.size(1) &&
          options.from == ImportSource::kCvpods) {
        value = value.narrow(0, 0, target.size(0));
      }
    }
    if (value.sizes() != target.sizes()) {
      std::string hint;
      if (name == "fpn.p6.weight") {
        hint = " (a P6 built from P5; this model builds P6 from C5, as the published AutoAssign)";
      }
      problems.push_back("'" + key + "' has shape " + shape_text(value.sizes()) + ", " + name +
                         " needs " + shape_text(target.sizes()) + hint);
      continue;
    }
    if (!filled.insert(name).second) {
      problems.push_back("two keys fill " + name + " (the second is '" + key + "')");
      continue;
    }
    target.copy_(value.to(target.dtype()));
  }
  if (!scales.empty()) {
    auto it = targets.find("head.scales");
    if (it == targets.end() || static_cast<int64_t>(scales.size()) != it->second.numel()) {
      problems.push_back(
          "the checkpoint has " + std::to_string(scales.size()) + " level scales; the model has " +
          (it == targets.end() ? std::string("none") : std::to_string(it->second.numel())));
    } else {
      for (const auto& [level, s] : scales) {
        if (level >= it->second.numel()) {
          problems.push_back("level scale " + std::to_string(level) + " out of range");
        } else {
          it->second[level].copy_(s);
        }
      }
      filled.insert("head.scales");
    }
  }
  report->left_initialised.clear();
  for (const auto& [name, t] : targets) {
    if (filled.count(name)) continue;
    if (name.size() >= 19 && name.substr(name.size() - 19) == "num_batches_tracked") continue;
    report->left_initialised.push_back(name);
  }
  if (!report->left_initialised.empty() && !options.allow_missing) {
    // Named as the user's file names them (the key it lacks), with the tensor it would fill.
    std::string list;
    for (size_t i = 0; i < report->left_initialised.size() && i < 8; ++i) {
      const std::string& name = report->left_initialised[i];
      const std::string key = source_key(options.from, name);
      list += std::string(i ? ", " : "") +
              (key.empty() ? "a key for " + name : "'" + key + "' (fills " + name + ")");
    }
    problems.push_back("the checkpoint lacks " + std::to_string(report->left_initialised.size()) +
                       " key(s) this model needs: " + list +
                       (report->left_initialised.size() > 8 ? ", ..." : "") +
                       "; --allow-missing keeps their initialisation");
  }
  if (!problems.empty()) {
    std::string text = std::to_string(problems.size()) + " problem(s):";
    for (size_t i = 0; i < problems.size() && i < 20; ++i) text += "\n  " + problems[i];
    if (problems.size() > 20) text += "\n  ...";
    fail(text);
  }
  report->config = config;
  return model;
}

}  // namespace autoassign
