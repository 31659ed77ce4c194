// SPDX-License-Identifier: MIT
#include "autoassign/data/evaluator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include <matio.h>

namespace autoassign {
namespace fs = std::filesystem;

// ---- COCO ----------------------------------------------------------------------------------

namespace {

struct CocoGt {
  float x1, y1, x2, y2;
  bool crowd;
  double area;
};

// IoU of a detection with a gt; against a crowd gt the union is the detection's own area.
double coco_iou(const CocoDetection& d, const CocoGt& g) {
  const double iw = std::max(0.0, double(std::min(d.x2, g.x2)) - std::max(d.x1, g.x1));
  const double ih = std::max(0.0, double(std::min(d.y2, g.y2)) - std::max(d.y1, g.y1));
  const double inter = iw * ih;
  const double area_d = double(d.x2 - d.x1) * double(d.y2 - d.y1);
  const double uni = g.crowd ? area_d : area_d + g.area - inter;
  return uni > 0 ? inter / uni : 0.0;
}

}  // namespace

CocoResult evaluate_coco(const Dataset& gt, const std::vector<CocoDetection>& dets) {
  constexpr int kThresholds = 10, kRecallPoints = 101, kMaxDets = 100;
  const double area_ranges[4][2] = {
      {0, 1e10}, {0, 32.0 * 32}, {32.0 * 32, 96.0 * 96}, {96.0 * 96, 1e10}};
  const int K = static_cast<int>(gt.class_names.size());
  std::map<int64_t, size_t> image_index;
  for (size_t i = 0; i < gt.samples.size(); ++i) image_index[gt.samples[i].image_id] = i;
  // Per (image, class): gts and detections (sorted by score, top maxDets).
  const size_t I = gt.samples.size();
  std::vector<std::vector<std::vector<CocoGt>>> g(I, std::vector<std::vector<CocoGt>>(K));
  std::vector<std::vector<std::vector<CocoDetection>>> d(
      I, std::vector<std::vector<CocoDetection>>(K));
  for (size_t i = 0; i < I; ++i) {
    for (const auto& o : gt.samples[i].objects) {
      if (o.label < 0 || o.label >= K) continue;
      g[i][o.label].push_back(
          {o.x1, o.y1, o.x2, o.y2, o.ignore,
           o.area >= 0 ? double(o.area) : double(o.x2 - o.x1) * double(o.y2 - o.y1)});
    }
  }
  for (const auto& det : dets) {
    auto it = image_index.find(det.image_id);
    if (it == image_index.end() || det.label < 0 || det.label >= K) continue;
    d[it->second][det.label].push_back(det);
  }
  for (auto& per_image : d) {
    for (auto& v : per_image) {
      std::stable_sort(v.begin(), v.end(),
                       [](const auto& a, const auto& b) { return a.score > b.score; });
      if (v.size() > kMaxDets) v.resize(kMaxDets);
    }
  }
  // pycocotools walks the images in sorted id order, which decides the order of equal scores.
  std::vector<size_t> by_image_id;
  for (const auto& [id, index] : image_index) by_image_id.push_back(index);
  // precision[t][k][a] (101 points) and recall[t][k][a]; -1 = undefined.
  std::vector<double> ap_sum(4 * kThresholds, 0.0);
  std::vector<int> ap_count(4 * kThresholds, 0);
  double ar_sum = 0;
  int ar_count = 0;
  std::vector<double> ap_t(kThresholds, 0.0);
  std::vector<int> ap_t_count(kThresholds, 0);
  for (int a = 0; a < 4; ++a) {
    for (int k = 0; k < K; ++k) {
      for (int t = 0; t < kThresholds; ++t) {
        // np.linspace(.5, .95, 10) as pycocotools builds it, to the last bit: i * step +
        // start, the last one exactly the stop.
        const double thr = t == kThresholds - 1 ? 0.95 : t * ((0.95 - 0.5) / 9) + 0.5;
        struct Scored {
          float score;
          bool tp;
          bool ignore;
        };
        std::vector<Scored> all;
        int npig = 0;
        for (size_t i : by_image_id) {
          const auto& gts = g[i][k];
          const auto& ds = d[i][k];
          if (gts.empty() && ds.empty()) continue;
          // Ignored gts (crowd or outside the area range) go last, as pycocotools sorts them.
          std::vector<size_t> order(gts.size());
          std::iota(order.begin(), order.end(), 0);
          auto gt_ignored = [&](size_t j) {
            return gts[j].crowd || gts[j].area < area_ranges[a][0] ||
                   gts[j].area > area_ranges[a][1];
          };
          std::stable_sort(order.begin(), order.end(),
                           [&](size_t x, size_t y) { return !gt_ignored(x) && gt_ignored(y); });
          for (size_t j : order) npig += gt_ignored(j) ? 0 : 1;
          std::vector<int> gt_matched(gts.size(), 0);
          for (const auto& det : ds) {
            double best = std::min(thr, 1 - 1e-10);
            int match = -1;
            for (size_t oj = 0; oj < order.size(); ++oj) {
              const size_t j = order[oj];
              if (gt_matched[j] && !gts[j].crowd) continue;
              // Once matched to a regular gt, stop at the ignored ones.
              if (match > -1 && !gt_ignored(static_cast<size_t>(match)) && gt_ignored(j)) break;
              const double iou = coco_iou(det, gts[j]);
              if (iou < best) continue;
              best = iou;
              match = static_cast<int>(j);
            }
            Scored s{det.score, false, false};
            if (match >= 0) {
              gt_matched[static_cast<size_t>(match)] = 1;
              s.ignore = gt_ignored(static_cast<size_t>(match));
              s.tp = !s.ignore;
            } else {
              const double area = double(det.x2 - det.x1) * double(det.y2 - det.y1);
              s.ignore = area < area_ranges[a][0] || area > area_ranges[a][1];
            }
            all.push_back(s);
          }
        }
        if (npig == 0) continue;
        std::stable_sort(all.begin(), all.end(),
                         [](const auto& x, const auto& y) { return x.score > y.score; });
        std::vector<double> rc, pr;
        double tp = 0, fp = 0;
        for (const auto& s : all) {
          if (s.ignore) continue;
          (s.tp ? tp : fp) += 1;
          rc.push_back(tp / npig);
          pr.push_back(tp / (tp + fp + std::numeric_limits<double>::epsilon()));
        }
        for (size_t i = pr.size(); i-- > 1;) pr[i - 1] = std::max(pr[i - 1], pr[i]);
        double sum = 0;
        for (int r = 0; r < kRecallPoints; ++r) {
          // np.linspace(0, 1, 101): r * 0.01 (not r / 100, which differs in the last bit for
          // some r), the last one exactly 1.
          const double target = r == kRecallPoints - 1 ? 1.0 : r * 0.01;
          const auto it = std::lower_bound(rc.begin(), rc.end(), target);
          if (it != rc.end()) sum += pr[static_cast<size_t>(it - rc.begin())];
        }
        ap_sum[a * kThresholds + t] += sum / kRecallPoints;
        ap_count[a * kThresholds + t] += 1;
        if (a == 0) {
          ar_sum += rc.empty() ? 0.0 : rc.back();
          ar_count += 1;
        }
      }
    }
  }
  auto mean_over = [&](int a, int t_from, int t_to) {
    double s = 0;
    int n = 0;
    for (int t = t_from; t < t_to; ++t) {
      if (ap_count[a * kThresholds + t] == 0) continue;
      s += ap_sum[a * kThresholds + t] / ap_count[a * kThresholds + t] *
           ap_count[a * kThresholds + t];
      n += ap_count[a * kThresholds + t];
    }
    return n ? s / n : -1.0;
  };
  CocoResult r;
  r.images = static_cast<int>(I);
  r.ap = mean_over(0, 0, kThresholds);
  r.ap50 = mean_over(0, 0, 1);
  r.ap75 = mean_over(0, 5, 6);
  r.ap_small = mean_over(1, 0, kThresholds);
  r.ap_medium = mean_over(2, 0, kThresholds);
  r.ap_large = mean_over(3, 0, kThresholds);
  r.ar100 = ar_count ? ar_sum / ar_count : -1.0;
  return r;
}

// ---- WIDER FACE ----------------------------------------------------------------------------

namespace {

struct MatFile {
  explicit MatFile(const std::string& p) : path(p), mat(Mat_Open(p.c_str(), MAT_ACC_RDONLY)) {
    if (!mat) throw std::runtime_error(p + ": cannot open as a MATLAB file");
  }
  ~MatFile() { Mat_Close(mat); }
  std::unique_ptr<matvar_t, void (*)(matvar_t*)> read(const char* name) const {
    matvar_t* v = Mat_VarRead(mat, name);
    if (!v) throw std::runtime_error(path + ": no variable '" + name + "'");
    if (v->class_type != MAT_C_CELL) {
      Mat_VarFree(v);
      throw std::runtime_error(path + ": '" + name + "' is not a cell array");
    }
    return {v, Mat_VarFree};
  }
  std::string path;
  mat_t* mat;
};

size_t numel(const matvar_t* v) {
  size_t n = 1;
  for (int i = 0; i < v->rank; ++i) n *= v->dims[i];
  return n;
}

std::string mat_string(const matvar_t* v, const std::string& where) {
  if (!v || v->class_type != MAT_C_CHAR) throw std::runtime_error(where + ": expected a string");
  const size_t n = numel(v);
  std::string s;
  if (v->data_type == MAT_T_UINT16 || v->data_type == MAT_T_UTF16) {
    const auto* p = static_cast<const uint16_t*>(v->data);
    for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(p[i]));
  } else {
    const auto* p = static_cast<const char*>(v->data);
    s.assign(p, p + n);
  }
  return s;
}

double mat_number(const matvar_t* v, size_t i) {
  switch (v->class_type) {
    case MAT_C_DOUBLE:
      return static_cast<const double*>(v->data)[i];
    case MAT_C_SINGLE:
      return static_cast<const float*>(v->data)[i];
    case MAT_C_INT8:
      return static_cast<const int8_t*>(v->data)[i];
    case MAT_C_UINT8:
      return static_cast<const uint8_t*>(v->data)[i];
    case MAT_C_INT16:
      return static_cast<const int16_t*>(v->data)[i];
    case MAT_C_UINT16:
      return static_cast<const uint16_t*>(v->data)[i];
    case MAT_C_INT32:
      return static_cast<const int32_t*>(v->data)[i];
    case MAT_C_UINT32:
      return static_cast<const uint32_t*>(v->data)[i];
    case MAT_C_INT64:
      return static_cast<double>(static_cast<const int64_t*>(v->data)[i]);
    case MAT_C_UINT64:
      return static_cast<double>(static_cast<const uint64_t*>(v->data)[i]);
    default:
      throw std::runtime_error("unsupported MATLAB numeric class");
  }
}

matvar_t* cell(matvar_t* v, size_t i, const std::string& where) {
  matvar_t* c = Mat_VarGetCell(v, static_cast<int>(i));
  if (!c) throw std::runtime_error(where + ": cell " + std::to_string(i) + " missing");
  return c;
}

}  // namespace

WiderGroundTruth load_wider_ground_truth(const std::string& dir) {
  const std::string all_path = dir + "/wider_face_val.mat";
  if (!fs::exists(all_path)) throw std::runtime_error("ground truth file missing: " + all_path);
  MatFile all(all_path);
  auto events = all.read("event_list");
  auto files = all.read("file_list");
  auto boxes = all.read("face_bbx_list");
  WiderGroundTruth gt;
  std::vector<std::vector<WiderGroundTruth::Image*>> slots;
  std::vector<std::vector<std::string>> slot_names;
  std::vector<std::string> event_names;
  for (size_t e = 0; e < numel(events.get()); ++e) {
    const std::string event =
        mat_string(cell(events.get(), e, all_path), all_path + ": event_list");
    event_names.push_back(event);
    matvar_t* fl = cell(files.get(), e, all_path);
    matvar_t* bl = cell(boxes.get(), e, all_path);
    slots.emplace_back();
    slot_names.emplace_back();
    for (size_t f = 0; f < numel(fl); ++f) {
      const std::string name = mat_string(cell(fl, f, all_path), all_path + ": file_list");
      matvar_t* b = cell(bl, f, all_path);
      auto& img = gt.events[event][name];
      const size_t n = b->rank >= 1 ? b->dims[0] : 0;
      if (numel(b) != n * 4) {
        throw std::runtime_error(all_path + ": face_bbx_list of " + event + "/" + name +
                                 " is not N x 4");
      }
      for (size_t r = 0; r < n; ++r) {
        // MATLAB is column-major: element (r, c) at r + c * n.
        img.boxes.push_back({mat_number(b, r), mat_number(b, r + n), mat_number(b, r + 2 * n),
                             mat_number(b, r + 3 * n)});
      }
      slots.back().push_back(&img);
      slot_names.back().push_back(name);
    }
  }
  const char* settings[3] = {"easy", "medium", "hard"};
  for (int s = 0; s < 3; ++s) {
    const std::string path = dir + "/wider_" + std::string(settings[s]) + "_val.mat";
    if (!fs::exists(path)) throw std::runtime_error("ground truth file missing: " + path);
    MatFile m(path);
    auto ev = m.read("event_list");
    auto fl = m.read("file_list");
    auto gl = m.read("gt_list");
    if (numel(ev.get()) != event_names.size()) {
      throw std::runtime_error(path + ": not aligned with wider_face_val.mat (event count)");
    }
    for (size_t e = 0; e < event_names.size(); ++e) {
      if (mat_string(cell(ev.get(), e, path), path) != event_names[e]) {
        throw std::runtime_error(path + ": not aligned with wider_face_val.mat at event " +
                                 event_names[e]);
      }
      matvar_t* files_e = cell(fl.get(), e, path);
      matvar_t* keep_e = cell(gl.get(), e, path);
      if (numel(files_e) != slots[e].size()) {
        throw std::runtime_error(path + ": not aligned with wider_face_val.mat in event " +
                                 event_names[e]);
      }
      for (size_t f = 0; f < slots[e].size(); ++f) {
        if (mat_string(cell(files_e, f, path), path + ": file_list") != slot_names[e][f]) {
          throw std::runtime_error(path + ": not aligned with wider_face_val.mat at " +
                                   event_names[e] + "/" + slot_names[e][f]);
        }
        matvar_t* k = cell(keep_e, f, path);
        auto& keep = slots[e][f]->keep[static_cast<size_t>(s)];
        const size_t n_boxes = slots[e][f]->boxes.size();
        for (size_t i = 0; i < numel(k); ++i) {
          const double index = mat_number(k, i);
          // 1-based indices into the image's boxes; anything else is a corrupt file.
          if (!(index >= 1 && index <= static_cast<double>(n_boxes))) {
            throw std::runtime_error(path + ": gt_list of " + event_names[e] + "/" +
                                     slot_names[e][f] + " holds index " + std::to_string(index) +
                                     " outside 1.." + std::to_string(n_boxes));
          }
          keep.push_back(static_cast<int>(index));
        }
      }
    }
  }
  return gt;
}

WiderPredictions read_wider_predictions(const std::string& dir, const WiderGroundTruth& gt) {
  if (!fs::is_directory(dir)) throw std::runtime_error("prediction directory not found: " + dir);
  WiderPredictions preds;
  for (const auto& [event, images] : gt.events) {
    const fs::path edir = fs::path(dir) / event;
    if (!fs::is_directory(edir)) continue;
    for (const auto& entry : fs::directory_iterator(edir)) {
      if (entry.path().extension() != ".txt") continue;
      const std::string name = entry.path().stem().string();
      if (!images.count(name)) continue;
      const std::string file = entry.path().string();
      std::ifstream in(file);
      std::string line;
      std::vector<std::string> lines;
      while (std::getline(in, line)) lines.push_back(line);
      if (lines.size() < 2)
        throw std::runtime_error(file + ": expected an image-name line and a count line");
      // As the reference tools read it: int(float(line)), truncating; a count that is not a
      // whole non-negative number (or has trailing text) is an error.
      long n = 0;
      {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(lines[1], &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || lines[1].find_first_not_of(" \t\r", used) != std::string::npos ||
            !std::isfinite(v) || v < 0) {
          throw std::runtime_error(file + ":2: the box count is not a non-negative number: '" +
                                   lines[1] + "'");
        }
        n = static_cast<long>(v);
      }
      std::vector<std::array<double, 5>> boxes;
      size_t ln = 2;
      for (long k = 0; k < n; ++k) {
        while (ln < lines.size() && lines[ln].find_first_not_of(" \t\r") == std::string::npos) ++ln;
        if (ln >= lines.size()) {
          throw std::runtime_error(file + ": count says " + std::to_string(n) + " boxes but " +
                                   std::to_string(k) + " box lines follow");
        }
        std::istringstream ss(lines[ln]);
        std::array<double, 5> b{};
        for (auto& x : b) {
          if (!(ss >> x) || !std::isfinite(x)) {
            throw std::runtime_error(file + ":" + std::to_string(ln + 1) +
                                     ": needs 'x y w h score', got '" + lines[ln] + "'");
          }
        }
        boxes.push_back(b);
        ++ln;
      }
      preds[{event, name}] = std::move(boxes);
    }
  }
  return preds;
}

void write_wider_prediction(const std::string& path, const std::string& image_name,
                            const std::vector<std::array<double, 5>>& boxes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << image_name << "\n" << boxes.size() << "\n";
  char buf[128];
  for (const auto& b : boxes) {
    std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f %.2f %.6f\n", b[0], b[1], b[2], b[3], b[4]);
    out << buf;
  }
}

WiderResult evaluate_wider(const WiderGroundTruth& gt, WiderPredictions preds,
                           double iou_threshold) {
  constexpr int kThresholds = 1000;
  WiderResult r;
  // norm_score.m: min-max over every evaluated prediction; each image sorted by score.
  double lo = 1e300, hi = -1e300;
  for (auto& [key, boxes] : preds) {
    std::stable_sort(boxes.begin(), boxes.end(),
                     [](const auto& a, const auto& b) { return a[4] > b[4]; });
    for (const auto& b : boxes) {
      lo = std::min(lo, b[4]);
      hi = std::max(hi, b[4]);
    }
    r.boxes += static_cast<int>(boxes.size());
  }
  for (auto& [key, boxes] : preds) {
    for (auto& b : boxes) b[4] = hi == lo ? 1.0 : (b[4] - lo) / (hi - lo);
  }
  r.images = static_cast<int>(preds.size());
  for (int s = 0; s < 3; ++s) {
    std::vector<double> proposals(kThresholds, 0.0), recalled(kThresholds, 0.0);
    int faces = 0;
    for (const auto& [key, pred] : preds) {
      const auto& img = gt.events.at(key.first).at(key.second);
      const auto& keep = img.keep[static_cast<size_t>(s)];
      faces += static_cast<int>(keep.size());
      if (img.boxes.empty() || pred.empty()) continue;
      std::vector<char> kept(img.boxes.size(), 0);
      for (int k : keep) {
        if (k >= 1 && static_cast<size_t>(k) <= kept.size()) kept[static_cast<size_t>(k - 1)] = 1;
      }
      // evaluation.m image_evaluation: each prediction, in score order, takes its best gt
      // (+1-pixel IoU, first on ties).
      std::vector<int> recall_list(img.boxes.size(), 0);
      std::vector<char> proposal(pred.size(), 1);
      std::vector<int> pred_recall(pred.size(), 0);
      int n_rec = 0;
      for (size_t h = 0; h < pred.size(); ++h) {
        const double px1 = pred[h][0], py1 = pred[h][1], px2 = pred[h][0] + pred[h][2],
                     py2 = pred[h][1] + pred[h][3];
        double best = -1;
        size_t best_k = 0;
        for (size_t k = 0; k < img.boxes.size(); ++k) {
          const auto& g = img.boxes[k];
          const double gx2 = g[0] + g[2], gy2 = g[1] + g[3];
          const double iw = std::min(px2, gx2) - std::max(px1, g[0]) + 1;
          const double ih = std::min(py2, gy2) - std::max(py1, g[1]) + 1;
          double o = 0;
          if (iw > 0 && ih > 0) {
            const double inter = iw * ih;
            const double uni =
                (px2 - px1 + 1) * (py2 - py1 + 1) + (gx2 - g[0] + 1) * (gy2 - g[1] + 1) - inter;
            o = inter / uni;
            if (!std::isfinite(o)) o = 0;
          }
          if (o > best) {
            best = o;
            best_k = k;
          }
        }
        if (best >= iou_threshold) {
          if (!kept[best_k]) {
            recall_list[best_k] = -1;
            proposal[h] = 0;
          } else if (recall_list[best_k] == 0) {
            recall_list[best_k] = 1;
            ++n_rec;
          }
        }
        pred_recall[h] = n_rec;
      }
      // image_pr_info: per threshold, proposals and recalls among scores >= threshold.
      std::vector<int> cum_prop(pred.size() + 1, 0);
      for (size_t h = 0; h < pred.size(); ++h) cum_prop[h + 1] = cum_prop[h] + proposal[h];
      size_t n_at = 0;
      for (int t = 0; t < kThresholds; ++t) {
        const double thr = 1.0 - static_cast<double>(t + 1) / kThresholds;
        while (n_at < pred.size() && pred[n_at][4] >= thr) ++n_at;
        proposals[static_cast<size_t>(t)] += cum_prop[n_at];
        recalled[static_cast<size_t>(t)] += n_at ? pred_recall[n_at - 1] : 0;
      }
    }
    r.faces[static_cast<size_t>(s)] = faces;
    if (faces == 0) continue;
    // VOCap.m over (recall, precision); 0/0 precision is NaN and ignored by the envelope.
    std::vector<double> mrec = {0.0}, mpre = {0.0};
    for (int t = 0; t < kThresholds; ++t) {
      mrec.push_back(recalled[static_cast<size_t>(t)] / faces);
      mpre.push_back(recalled[static_cast<size_t>(t)] / proposals[static_cast<size_t>(t)]);
    }
    r.max_recall[static_cast<size_t>(s)] = mrec.back();
    mrec.push_back(1.0);
    mpre.push_back(0.0);
    for (size_t i = mpre.size() - 1; i-- > 0;) {
      mpre[i] = std::isnan(mpre[i])       ? mpre[i + 1]
                : std::isnan(mpre[i + 1]) ? mpre[i]
                                          : std::max(mpre[i], mpre[i + 1]);
    }
    double ap = 0;
    for (size_t i = 1; i < mrec.size(); ++i) {
      if (mrec[i] != mrec[i - 1]) ap += (mrec[i] - mrec[i - 1]) * mpre[i];
    }
    r.ap[static_cast<size_t>(s)] = ap;
  }
  return r;
}

}  // namespace autoassign
