// SPDX-License-Identifier: MIT
#include "autoassign/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace autoassign {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_at(const std::string& file, int line, const std::string& what) {
  throw std::runtime_error(file + ":" + std::to_string(line) + ": " + what);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Strict integer parse of a whole token.
bool parse_int(const std::string& token, long& out) {
  if (token.empty()) return false;
  size_t pos = 0;
  try {
    out = std::stol(token, &pos);
  } catch (const std::exception&) {
    return false;
  }
  return pos == token.size();
}

// A value a box coordinate (stored as float) can hold: finite and within float's range; the
// cast of anything else is undefined (found by the voc fuzz target with "<xmax>1e39</xmax>").
bool fits_float(double v) {
  return std::isfinite(v) && std::abs(v) <= static_cast<double>(std::numeric_limits<float>::max());
}

bool parse_float(const std::string& token, double& out) {
  if (token.empty()) return false;
  size_t pos = 0;
  try {
    out = std::stod(token, &pos);
  } catch (const std::exception&) {
    return false;
  }
  // "nan", "inf", overflowing values and finite ones beyond float parse as doubles but are no
  // coordinates.
  return pos == token.size() && fits_float(out);
}

Dataset coco_from_json(const nlohmann::json& j, const std::string& annotation_json,
                       const std::string& images_dir);

// 1-based line of byte offset `pos` in `text`, for error messages.
int line_of(const std::string& text, size_t pos) {
  return 1 + static_cast<int>(std::count(
                 text.begin(),
                 text.begin() + static_cast<std::ptrdiff_t>(std::min(pos, text.size())), '\n'));
}

// Boxes against the image size the annotation file states (width/height <= 0: unknown, kept).
// A box wholly outside is skipped and counted; one partly outside is clipped and counted: both
// are annotation slips the training and evaluation code should neither crash on nor hide.
bool fit_to_image(Annotation& a, double width, double height, Dataset& ds) {
  if (width <= 0 || height <= 0) return true;
  if (a.x2 <= 0 || a.y2 <= 0 || a.x1 >= width || a.y1 >= height) {
    ++ds.skipped["boxes outside the image"];
    return false;
  }
  if (a.x1 < 0 || a.y1 < 0 || a.x2 > width || a.y2 > height) {
    ++ds.skipped["boxes clipped to the image (partly outside)"];
    a.x1 = std::max(a.x1, 0.0f);
    a.y1 = std::max(a.y1, 0.0f);
    a.x2 = std::min(a.x2, static_cast<float>(width));
    a.y2 = std::min(a.y2, static_cast<float>(height));
  }
  return true;
}

}  // namespace

void Dataset::append(const Dataset& other) {
  if (other.class_names != class_names) {
    throw std::runtime_error("cannot combine datasets '" + name + "' and '" + other.name +
                             "': their class names differ");
  }
  samples.insert(samples.end(), other.samples.begin(), other.samples.end());
  for (const auto& [k, v] : other.skipped) skipped[other.name + ": " + k] += v;
  name += "+" + other.name;
}

std::string Dataset::summary() const {
  size_t objects = 0, ignored = 0;
  for (const auto& s : samples) {
    for (const auto& o : s.objects) (o.ignore ? ignored : objects) += 1;
  }
  std::string text = name + ": " + std::to_string(samples.size()) + " images, " +
                     std::to_string(objects) + " objects, " + std::to_string(ignored) +
                     " ignored, " + std::to_string(class_names.size()) + " classes";
  for (const auto& [what, n] : skipped) text += "; skipped " + std::to_string(n) + " " + what;
  return text;
}

Dataset load_widerface(const std::string& root, const std::string& split) {
  if (split != "train" && split != "val") {
    throw std::invalid_argument("WIDER FACE split must be train or val, got '" + split + "'");
  }
  const std::string txt = root + "/wider_face_split/wider_face_" + split + "_bbx_gt.txt";
  const std::string images = root + "/WIDER_" + split + "/images";
  std::ifstream in(txt);
  if (!in) throw std::runtime_error(txt + ": cannot open WIDER FACE annotation file");
  Dataset ds;
  ds.name = "widerface-" + split;
  ds.class_names = {"face"};
  std::string line;
  int line_no = 0;
  auto next = [&](const char* what) {
    if (!std::getline(in, line)) {
      fail_at(txt, line_no + 1, std::string("file ends where ") + what + " was expected");
    }
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  };
  while (std::getline(in, line)) {
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    Sample s;
    s.key = line.size() > 4 ? line.substr(0, line.size() - 4) : line;  // drop ".jpg"
    s.image = images + "/" + line;
    s.image_id = static_cast<int64_t>(ds.samples.size());
    const int name_line = line_no;
    if (!fs::exists(s.image)) fail_at(txt, name_line, "image file not found: " + s.image);
    next("a face count");
    long count = 0;
    if (!parse_int(line, count) || count < 0) {
      fail_at(txt, line_no, "expected a face count, got '" + line + "'");
    }
    // An image with no face still has one line of zeros, as the official file has it.
    const long lines = std::max(count, 1L);
    for (long i = 0; i < lines; ++i) {
      next("a face line");
      std::istringstream fields(line);
      std::vector<long> v;
      std::string token;
      while (fields >> token) {
        long x = 0;
        if (!parse_int(token, x)) fail_at(txt, line_no, "not an integer: '" + token + "'");
        v.push_back(x);
      }
      if (v.size() != 10) {
        fail_at(txt, line_no,
                "expected 10 numbers (x y w h blur expression illumination invalid occlusion "
                "pose), got " +
                    std::to_string(v.size()));
      }
      if (count == 0) continue;
      if (v[2] <= 0 || v[3] <= 0) {
        ++ds.skipped["boxes with zero width or height"];
        continue;
      }
      Annotation a;
      a.x1 = static_cast<float>(v[0]);
      a.y1 = static_cast<float>(v[1]);
      a.x2 = static_cast<float>(v[0] + v[2]);
      a.y2 = static_cast<float>(v[1] + v[3]);
      a.ignore = v[7] != 0;  // "invalid"
      s.objects.push_back(a);
    }
    ds.samples.push_back(std::move(s));
  }
  return ds;
}

Dataset load_coco(const std::string& annotation_json, const std::string& images_dir) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(annotation_json));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(annotation_json + ": not valid JSON: " + e.what());
  }
  for (const char* key : {"images", "annotations", "categories"}) {
    if (!j.contains(key) || !j[key].is_array()) {
      throw std::runtime_error(annotation_json + ": missing array '" + key + "'");
    }
  }
  // Wrong types and missing keys surface as nlohmann exceptions: name the file.
  try {
    return coco_from_json(j, annotation_json, images_dir);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(annotation_json + ": malformed COCO annotations: " + e.what());
  }
}

namespace {

// A COCO id: a JSON integer that fits int64. nlohmann's get<int64_t> casts a float (1e300) or a
// larger unsigned number without a check, which is undefined behaviour.
int64_t coco_id(const nlohmann::json& v, const char* what) {
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() &&
       v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
    throw nlohmann::json::other_error::create(
        501, std::string(what) + " must be an integer, got " + v.dump(), &v);
  }
  return v.get<int64_t>();
}

// A COCO coordinate, size or area: a JSON number within float's range (boxes are stored as
// float; nlohmann's get<float> of 1e39 is an unchecked, undefined cast).
double coco_number(const nlohmann::json& v, const char* what) {
  if (!v.is_number() || !fits_float(v.get<double>())) {
    throw nlohmann::json::other_error::create(
        501, std::string(what) + " must be a number within float range, got " + v.dump(), &v);
  }
  return v.get<double>();
}

// An optional COCO number: `fallback` where the key is absent.
double coco_number(const nlohmann::json& obj, const char* key, double fallback, const char* what) {
  return obj.contains(key) ? coco_number(obj[key], what) : fallback;
}

// An annotation's own id for messages ("?" if it has none or it is not an integer).
std::string annotation_id(const nlohmann::json& a) {
  return a.contains("id") && a["id"].is_number_integer() ? a["id"].dump() : "?";
}

Dataset coco_from_json(const nlohmann::json& j, const std::string& annotation_json,
                       const std::string& images_dir) {
  Dataset ds;
  ds.name = fs::path(annotation_json).stem().string();
  std::map<int64_t, int> label_of;
  std::vector<std::pair<int64_t, std::string>> cats;
  for (const auto& c : j["categories"])
    cats.emplace_back(coco_id(c.at("id"), "categories[].id"), c.at("name"));
  std::sort(cats.begin(), cats.end());
  for (const auto& [id, name] : cats) {
    label_of[id] = static_cast<int>(ds.class_names.size());
    ds.class_names.push_back(name);
  }
  std::map<int64_t, size_t> index_of;
  std::vector<std::pair<double, double>> sizes;
  for (const auto& im : j["images"]) {
    Sample s;
    s.image_id = coco_id(im.at("id"), "images[].id");
    const std::string file = im.at("file_name");
    s.image = images_dir + "/" + file;
    s.key = fs::path(file).stem().string();
    if (!fs::exists(s.image)) {
      throw std::runtime_error(annotation_json + ": image " + std::to_string(s.image_id) +
                               ": file not found: " + s.image);
    }
    index_of[s.image_id] = ds.samples.size();
    sizes.emplace_back(coco_number(im, "width", 0.0, "images[].width"),
                       coco_number(im, "height", 0.0, "images[].height"));
    ds.samples.push_back(std::move(s));
  }
  for (const auto& a : j["annotations"]) {
    const int64_t image_id = coco_id(a.at("image_id"), "annotations[].image_id");
    auto it = index_of.find(image_id);
    if (it == index_of.end()) {
      throw std::runtime_error(annotation_json + ": annotation " + annotation_id(a) +
                               " refers to unknown image " + std::to_string(image_id));
    }
    const auto cat = label_of.find(coco_id(a.at("category_id"), "annotations[].category_id"));
    if (cat == label_of.end()) {
      throw std::runtime_error(annotation_json + ": annotation " + annotation_id(a) +
                               " has an unknown category_id");
    }
    const auto& bbox = a.at("bbox");
    if (!bbox.is_array() || bbox.size() != 4) {
      throw std::runtime_error(annotation_json + ": annotation " + annotation_id(a) +
                               ": bbox must be [x, y, w, h]");
    }
    const double x = coco_number(bbox[0], "bbox[0]"), y = coco_number(bbox[1], "bbox[1]");
    const double w = coco_number(bbox[2], "bbox[2]"), h = coco_number(bbox[3], "bbox[3]");
    if (w <= 0 || h <= 0) {
      ++ds.skipped["boxes with zero width or height"];
      continue;
    }
    if (!fits_float(x + w) || !fits_float(y + h)) {
      throw std::runtime_error(annotation_json + ": annotation " + annotation_id(a) +
                               ": bbox corner beyond float range");
    }
    Annotation an;
    an.x1 = static_cast<float>(x);
    an.y1 = static_cast<float>(y);
    an.x2 = static_cast<float>(x + w);
    an.y2 = static_cast<float>(y + h);
    an.label = cat->second;
    an.ignore = coco_number(a, "iscrowd", 0.0, "annotations[].iscrowd") != 0;
    // COCO's area is the segment's, not the box's: pycocotools ranks S/M/L by it.
    an.area = static_cast<float>(coco_number(a, "area", -1.0, "annotations[].area"));
    if (!fit_to_image(an, sizes[it->second].first, sizes[it->second].second, ds)) continue;
    ds.samples[it->second].objects.push_back(an);
  }
  return ds;
}

}  // namespace

namespace {

// The text of the first <tag>...</tag> inside `xml` from `from`; npos-safe.
bool xml_tag(const std::string& xml, const std::string& tag, std::string& out, size_t from = 0,
             size_t to = std::string::npos) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const size_t a = xml.find(open, from);
  if (a == std::string::npos || (to != std::string::npos && a >= to)) return false;
  const size_t b = xml.find(close, a);
  if (b == std::string::npos) return false;
  out = xml.substr(a + open.size(), b - a - open.size());
  const auto first = out.find_first_not_of(" \t\r\n");
  const auto last = out.find_last_not_of(" \t\r\n");
  out = first == std::string::npos ? "" : out.substr(first, last - first + 1);
  return true;
}

}  // namespace

Dataset load_voc(const std::string& dir, const std::map<std::string, std::string>& class_map) {
  std::string ann_dir = dir + "/annotations";
  if (!fs::is_directory(ann_dir)) ann_dir = dir + "/Annotations";
  if (!fs::is_directory(ann_dir)) throw std::runtime_error(dir + ": no annotations/ folder");
  std::string img_dir = dir + "/images";
  if (!fs::is_directory(img_dir)) img_dir = dir + "/JPEGImages";
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(ann_dir)) {
    if (e.path().extension() == ".xml") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  Dataset ds;
  ds.name = fs::path(dir).filename().string();
  std::set<std::string> names;
  for (const auto& [from, to] : class_map) names.insert(to);
  std::map<std::string, int> label_of;
  // With a map, labels are the sorted output names; without, the names met, sorted at the end.
  struct Raw {
    Annotation a;
    std::string name;
  };
  std::vector<std::vector<Raw>> raw;
  for (const auto& file : files) {
    const std::string xml = read_file(file);
    std::string filename;
    if (!xml_tag(xml, "filename", filename)) throw std::runtime_error(file + ": no <filename>");
    Sample s;
    s.image = img_dir + "/" + filename;
    s.key = fs::path(filename).stem().string();
    s.image_id = static_cast<int64_t>(ds.samples.size());
    if (!fs::exists(s.image)) throw std::runtime_error(file + ": image file not found: " + s.image);
    std::vector<Raw> objects;
    // <size> is optional in VOC files; where present it bounds the boxes.
    double width = 0, height = 0;
    {
      std::string w, h;
      if (xml_tag(xml, "width", w) && xml_tag(xml, "height", h) &&
          (!parse_float(w, width) || !parse_float(h, height))) {
        fail_at(file, line_of(xml, xml.find("<size>")), "bad <width> or <height> in <size>");
      }
    }
    size_t pos = 0;
    while ((pos = xml.find("<object>", pos)) != std::string::npos) {
      const size_t end = xml.find("</object>", pos);
      if (end == std::string::npos) fail_at(file, line_of(xml, pos), "unterminated <object>");
      const size_t start = pos;
      std::string name, difficult, box[4];
      if (!xml_tag(xml, "name", name, pos, end))
        fail_at(file, line_of(xml, pos), "object without <name>");
      const char* coords[4] = {"xmin", "ymin", "xmax", "ymax"};
      double v[4];
      for (int i = 0; i < 4; ++i) {
        if (!xml_tag(xml, coords[i], box[i], pos, end) || !parse_float(box[i], v[i])) {
          const size_t at = xml.find(std::string("<") + coords[i] + ">", pos);
          fail_at(file, line_of(xml, at < end ? at : pos),
                  "object '" + name + "': bad or missing <" + coords[i] + ">");
        }
      }
      pos = end;
      if (!class_map.empty()) {
        auto it = class_map.find(name);
        if (it == class_map.end()) {
          ++ds.skipped["objects of unmapped class '" + name + "'"];
          continue;
        }
        name = it->second;
      }
      if (v[2] <= v[0] || v[3] <= v[1]) {
        ++ds.skipped["boxes with zero width or height"];
        continue;
      }
      Raw r;
      r.a.x1 = static_cast<float>(v[0]);
      r.a.y1 = static_cast<float>(v[1]);
      r.a.x2 = static_cast<float>(v[2]);
      r.a.y2 = static_cast<float>(v[3]);
      r.a.ignore = xml_tag(xml, "difficult", difficult, start, end) && difficult == "1";
      r.name = name;
      if (!fit_to_image(r.a, width, height, ds)) continue;
      names.insert(name);
      objects.push_back(r);
    }
    raw.push_back(std::move(objects));
    ds.samples.push_back(std::move(s));
  }
  ds.class_names.assign(names.begin(), names.end());
  for (size_t i = 0; i < ds.class_names.size(); ++i)
    label_of[ds.class_names[i]] = static_cast<int>(i);
  for (size_t i = 0; i < raw.size(); ++i) {
    for (auto& r : raw[i]) {
      r.a.label = label_of[r.name];
      ds.samples[i].objects.push_back(r.a);
    }
  }
  return ds;
}

std::map<std::string, std::string> parse_class_map(const std::string& text) {
  std::map<std::string, std::string> map;
  std::stringstream ss(text);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
      throw std::invalid_argument("--class-map entry '" + entry + "' is not NAME=NEW_NAME");
    }
    map[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return map;
}

Dataset load_datasets(const DatasetSources& d) {
  std::vector<Dataset> parts;
  if (!d.widerface.empty()) parts.push_back(load_widerface(d.widerface, d.widerface_split));
  if (!d.coco.empty()) {
    if (d.coco_images.empty()) throw std::invalid_argument("--coco needs --coco-images");
    parts.push_back(load_coco(d.coco, d.coco_images));
  }
  if (!d.voc.empty()) parts.push_back(load_voc(d.voc, parse_class_map(d.class_map)));
  if (parts.empty()) throw std::invalid_argument("give a dataset: --widerface, --coco or --voc");
  Dataset all = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) all.append(parts[i]);
  if (d.max_images > 0 && static_cast<int>(all.samples.size()) > d.max_images) {
    all.samples.resize(static_cast<size_t>(d.max_images));
  }
  return all;
}

}  // namespace autoassign
