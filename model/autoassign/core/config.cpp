// SPDX-License-Identifier: MIT
// ModelConfig <-> JSON, presets, validation.
#include "autoassign/core/config.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoassign/core/files.h"
#include "autoassign/core/json.h"
#include "autoassign/core/schema.h"
#include "autoassign/core/types.h"
#include "presets.h"

namespace autoassign {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::invalid_argument(source + ": " + what);
}

constexpr int kMaxClasses = 10000;

void check_num_classes(int n) {
  if (n < 1 || n > kMaxClasses) {
    throw std::invalid_argument("num_classes must be in [1, " + std::to_string(kMaxClasses) +
                                "], got " + std::to_string(n));
  }
}

// A value for an error message: its JSON text, cut short (a 50 MB string stays out of it).
std::string brief(const json& v) {
  std::string text = v.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return sanitize_utf8(text);
}

template <typename T>
struct is_vector : std::false_type {};
template <typename U>
struct is_vector<std::vector<U>> : std::true_type {};

// Whether nlohmann's conversion of `v` to T is defined behaviour: it casts a JSON float, or an
// integer out of T's range, to an integer type or float without a check (undefined: found by
// the config_json fuzz target with a height of 3.8e47). Integers must be JSON integers within
// range; a float target takes any finite number within its range.
template <typename T>
bool representable(const json& v) {
  if constexpr (is_vector<T>::value) {
    if (!v.is_array()) return true;  // get<T> reports the type error
    for (const auto& e : v) {
      if (!representable<typename T::value_type>(e)) return false;
    }
    return true;
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!v.is_number()) return true;
    if (!v.is_number_integer()) return false;
    if (v.is_number_unsigned()) {
      return v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    const int64_t i = v.get<int64_t>();
    return i >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
           (i < 0 ||
            static_cast<uint64_t>(i) <= static_cast<uint64_t>(std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number_float()) return true;
    const double d = v.get<double>();
    return std::isfinite(d) && std::fabs(d) <= static_cast<double>(std::numeric_limits<T>::max());
  } else {
    return true;
  }
}

// Reads `key` of `obj` into `out` when present; a wrong type or a number the field cannot hold
// names the key.
template <typename T>
void get(const json& obj, const char* key, T& out, const std::string& source,
         const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) return;
  if (!representable<T>(*it)) {
    fail(source,
         "key '" + path + key + "' holds a number out of range or not an integer: " + brief(*it));
  }
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    fail(source, "key '" + path + key + "' has a value of the wrong type: " + brief(*it));
  }
}

void check_keys(const json& obj, const std::set<std::string>& known, const std::string& source,
                const std::string& path) {
  if (!obj.is_object()) fail(source, "'" + path + "' must be a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!known.count(it.key())) fail(source, "unknown key '" + path + it.key() + "'");
  }
}

// Upper bounds for every field. Generous for real models (R-50 FPN uses 2048 channels, 80
// classes, 1333 px), tight enough that no config can make the process allocate without
// bound before a weight is read: the network is built from the config alone.
constexpr int kMaxChannels = 4096;
constexpr int kMaxBlocks = 64;
constexpr int kMaxHeadConvs = 16;
constexpr int kMaxSide = 8192;     // network input side, pixels
constexpr int kMaxDivisor = 1024;  // input.size_divisor
constexpr int kMaxTopk = 1000000;
constexpr size_t kMaxNameBytes = 256;
// A model of more parameters than this (4 GB in fp32) is refused before it is built.
constexpr double kMaxParameters = 1e9;

// Every field of each section, once: its JSON key, the member, its rule. from_json reads by
// these tables (and refuses keys they lack), to_json writes by them, validate() checks each
// rule before the rules between fields. S is the section, const or not.
template <typename S, typename F>
void backbone_fields(S& b, F&& f) {
  f("type", b.type, one_of("resnet18|resnet34|resnet50|fast"));
  f("norm", b.norm, one_of("frozen_bn|bn|gn"));
  f("freeze_at", b.freeze_at, range(0, 5));
  f("channels", b.channels, range(1, kMaxChannels));
  f("blocks", b.blocks, range(0, kMaxBlocks));
  f("reparam", b.reparam, any_value());
  f("stride_in_1x1", b.stride_in_1x1, any_value());
}
template <typename S, typename F>
void fpn_fields(S& n, F&& f) {
  f("channels", n.channels, range(1, kMaxChannels));
  f("levels", n.levels, range(3, 7));
}
template <typename S, typename F>
void head_fields(S& h, F&& f) {
  f("channels", h.channels, range(1, kMaxChannels));
  f("num_convs", h.num_convs, range(0, kMaxHeadConvs));
  f("norm", h.norm, one_of("gn|bn|none"));
  f("gn_groups", h.gn_groups, range(1, kMaxChannels));
  f("share_tower", h.share_tower, any_value());
  f("reparam", h.reparam, any_value());
  f("norm_per_level", h.norm_per_level, any_value());
  f("min_distance", h.min_distance, range(-1.0, 0.0));
}
template <typename S, typename F>
void input_fields(S& i, F&& f) {
  f("resize", i.resize, one_of("short_long|fit"));
  f("short_side", i.short_side, any_value());  // by resize, in validate()
  f("long_side", i.long_side, any_value());
  f("width", i.width, any_value());
  f("height", i.height, any_value());
  f("size_divisor", i.size_divisor, range(1, kMaxDivisor));
  f("channel_order", i.channel_order, one_of("BGR|RGB"));
  f("mean", i.mean, range(-1e6, 1e6));
  f("std", i.std, range(1e-6, 1e6));
}
template <typename S, typename F>
void postprocess_fields(S& p, F&& f) {
  f("score_threshold", p.score_threshold, range(0, 1));
  f("nms_iou", p.nms_iou, above(0, 1));
  f("topk_per_level", p.topk_per_level, range(1, kMaxTopk));
  f("max_detections", p.max_detections, range(1, kMaxTopk));
  f("order", p.order, one_of("cvpods|mmdet"));
  f("vote_iou", p.vote_iou, range(0, 1));
}

// Calls section(key, fields-of-section, section) for the five sections, in order.
template <typename C, typename F>
void sections(C& c, F&& section) {
  section("backbone", c.backbone, [](auto& s, auto&& f) { backbone_fields(s, f); });
  section("fpn", c.fpn, [](auto& s, auto&& f) { fpn_fields(s, f); });
  section("head", c.head, [](auto& s, auto&& f) { head_fields(s, f); });
  section("input", c.input, [](auto& s, auto&& f) { input_fields(s, f); });
  section("postprocess", c.postprocess, [](auto& s, auto&& f) { postprocess_fields(s, f); });
}

}  // namespace

std::vector<int> ModelConfig::strides() const {
  std::vector<int> s;
  for (int level : fpn.levels) s.push_back(1 << level);
  return s;
}

nlohmann::json parse_json_strict(const std::string& text, const std::string& source,
                                 int max_depth) {
  // Refused while parsing, before anything recursive sees the document: nesting deeper than
  // the document's kind has (100,000 levels crashed nlohmann's recursive dump() in an error
  // message), and a key given twice (the library would keep the last one silently).
  std::vector<std::set<std::string>> keys;
  auto check = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > max_depth) {
      fail(source, "nests deeper than " + std::to_string(max_depth) + " levels");
    }
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.empty() &&
        !keys.back().insert(parsed.get<std::string>()).second) {
      fail(source, "repeats the key '" + sanitize_utf8(parsed.get<std::string>()) + "'");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& source) {
  const json j = parse_json_strict(text, source, 8);
  ModelConfig c;
  std::set<std::string> top = {"name", "description", "num_classes", "class_names"};
  sections(c, [&](const char* key, auto&, auto) { top.insert(key); });
  check_keys(j, top, source, "");
  get(j, "name", c.name, source, "");
  get(j, "num_classes", c.num_classes, source, "");
  get(j, "class_names", c.class_names, source, "");
  sections(c, [&](const char* key, auto& section, auto fields) {
    if (!j.contains(key)) return;
    const json& sj = j[key];
    const std::string path = std::string(key) + ".";
    std::set<std::string> known;
    fields(section, [&](const char* k, auto&, const FieldRule&) { known.insert(k); });
    check_keys(sj, known, source, path);
    fields(section,
           [&](const char* k, auto& value, const FieldRule&) { get(sj, k, value, source, path); });
  });
  if (c.class_names.empty()) {
    // The default names are derived from num_classes: its range first (2000000000 would build
    // two billion names before validate() refused it).
    try {
      check_num_classes(c.num_classes);
    } catch (const std::invalid_argument& e) {
      fail(source, e.what());
    }
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
  sections(*this, [&](const char* key, const auto& section, auto fields) {
    json& sj = j[key] = json::object();
    fields(section, [&](const char* k, const auto& value, const FieldRule&) { sj[k] = value; });
  });
  return j.dump(indent);
}

double ModelConfig::parameter_estimate() const {
  // Convolution weights only, counted from the architecture; norms and biases add < 1%.
  auto conv = [](double in, double out, double k) { return in * out * k * k; };
  double n = 0;
  if (backbone.type == "fast") {
    const auto& ch = backbone.channels;
    const auto& bl = backbone.blocks;
    if (ch.size() == 5 && bl.size() == 4) {
      const double rep = backbone.reparam ? 10.0 / 9.0 : 1.0;  // the 1x1 branches
      n += conv(3, ch[0], 3) * rep;
      for (size_t s = 0; s < 4; ++s) {
        n += (conv(ch[s], ch[s + 1], 3) + bl[s] * conv(ch[s + 1], ch[s + 1], 3)) * rep;
      }
    }
  } else {
    // The fixed ResNets' convolution weights (torchvision's counts without the classifier).
    n += backbone.type == "resnet18" ? 11.2e6 : backbone.type == "resnet34" ? 21.3e6 : 23.5e6;
  }
  const double c = fpn.channels;
  std::vector<double> c345 = {128, 256, 512};
  if (backbone.type == "resnet50") c345 = {512, 1024, 2048};
  if (backbone.type == "fast" && backbone.channels.size() == 5) {
    c345 = {double(backbone.channels[2]), double(backbone.channels[3]),
            double(backbone.channels[4])};
  }
  for (size_t l = 0; l < fpn.levels.size(); ++l) {
    n += l < 3 ? conv(c345[l], c, 1) + conv(c, c, 3)  // lateral + output
               : conv(l == 3 ? c345[2] : c, c, 3);    // P6 from C5, P7 from P6
  }
  n += (head.share_tower ? 1 : 2) * head.num_convs * conv(c, c, 3) * (head.reparam ? 10.0 / 9 : 1);
  n += conv(c, num_classes + 5.0, 3);
  return n;
}

void ModelConfig::validate() const {
  // Each check runs before anything that depends on it (no division by a zero divisor, no
  // allocation sized by an unchecked value), and names the field and its allowed range: first
  // every field's own rule (the tables above), then the rules between fields.
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  check_num_classes(num_classes);
  if (static_cast<int>(class_names.size()) != num_classes) {
    bad("class_names has " + std::to_string(class_names.size()) + " entries but num_classes is " +
        std::to_string(num_classes));
  }
  for (size_t k = 0; k < class_names.size(); ++k) {
    if (class_names[k].size() > kMaxNameBytes) {
      bad("class_names[" + std::to_string(k) + "] is longer than " + std::to_string(kMaxNameBytes) +
          " bytes");
    }
  }
  if (name.size() > kMaxNameBytes) {
    bad("name is longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  sections(*this, [&](const char* key, const auto& section, auto fields) {
    fields(section, [&](const char* k, const auto& value, const FieldRule& rule) {
      check_field(std::string(key) + "." + k, value, rule);
    });
  });
  // Between fields.
  if (backbone.type == "fast") {
    if (backbone.channels.size() != 5) bad("backbone.channels must have 5 entries for 'fast'");
    if (backbone.blocks.size() != 4) bad("backbone.blocks must have 4 entries for 'fast'");
  }
  if (backbone.reparam) {
    // The RepVGG backbone crashes inside LibTorch 1.13's CPU convolutions (heap corruption
    // in training, and a segfault once in a train-mode forward); refused until understood.
    bad("backbone.reparam is not supported with this LibTorch (1.13 crashes in its CPU "
        "convolutions on that network); use head.reparam");
  }
  if (fpn.levels.empty()) bad("fpn.levels must not be empty");
  for (size_t i = 0; i < fpn.levels.size(); ++i) {
    if (fpn.levels[i] != 3 + static_cast<int>(i)) {
      bad("fpn.levels must be a contiguous range starting at 3 and ending at most at 7");
    }
  }
  if (head.channels != fpn.channels) {
    bad("head.channels (" + std::to_string(head.channels) + ") must equal fpn.channels (" +
        std::to_string(fpn.channels) + ")");
  }
  if (head.norm == "gn") {
    check_field("head.gn_groups", head.gn_groups, range(1, head.channels));
    if (head.channels % head.gn_groups != 0) {
      bad("head.gn_groups (" + std::to_string(head.gn_groups) + ") must divide head.channels");
    }
  }
  if (head.reparam && head.norm != "bn") bad("head.reparam needs head.norm 'bn'");
  if (head.norm_per_level && head.norm != "bn") bad("head.norm_per_level needs head.norm 'bn'");
  if (head.norm_per_level && head.reparam) {
    bad("head.norm_per_level and head.reparam cannot be combined");
  }
  const int max_stride = 1 << fpn.levels.back();
  if (input.size_divisor % std::min(max_stride, 32) != 0) {
    bad("input.size_divisor must be a positive multiple of " +
        std::to_string(std::min(max_stride, 32)));
  }
  if (input.resize == "short_long") {
    check_field("input.short_side", input.short_side, range(1, kMaxSide));
    check_field("input.long_side", input.long_side, range(input.short_side, kMaxSide));
  } else {  // "fit"
    check_field("input.width", input.width, range(1, kMaxSide));
    check_field("input.height", input.height, range(1, kMaxSide));
    if (input.width % input.size_divisor || input.height % input.size_divisor) {
      bad("input.width and input.height must be multiples of input.size_divisor");
    }
  }
  const double params = parameter_estimate();
  if (params > kMaxParameters) {
    std::ostringstream m;
    m << "the network would have about " << params / 1e6 << " M parameters, more than the "
      << kMaxParameters / 1e6 << " M this build accepts (channels, blocks or num_convs too large)";
    bad(m.str());
  }
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
  return from_json(read_file_capped(path, kMaxConfigFileBytes, "config file"), path);
}

}  // namespace autoassign
