// SPDX-License-Identifier: MIT
// autoassign detect (images -> JSON lines, WIDER prediction files, drawn images) and
// autoassign eval (COCO-style AP and the WIDER FACE protocol). Both run the Detector facade,
// the same code path as the GStreamer element.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "autoassign/core/default_model.h"
#include "autoassign/core/files.h"
#include "autoassign/data/dataset.h"
#include "autoassign/data/evaluator.h"
#include "autoassign/infer/detector.h"
#include "commands.h"

namespace autoassign::cli {
namespace fs = std::filesystem;

namespace {

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

// An input file that cannot be used as an image; what() is "PATH: reason".
struct BadImage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Decodes and detects; `seconds` accumulates the detect() time alone (pre-processing,
// network and post-processing, not JPEG decoding), the per-frame latency a video user sees.
std::vector<Detection> detect_file(const Detector& det, const std::string& path, cv::Mat* keep,
                                   double* seconds) {
  // Read and checked before decoding: a FIFO cannot block, a truncated file is named as such
  // (libjpeg would fill it with grey), and the size is bounded before memory is spent on it.
  // Every reason a file cannot be used becomes one BadImage naming the path.
  cv::Mat img;
  try {
    const std::string bytes = read_file_capped(path, kMaxImageFileBytes, "image");
    read_image_header(bytes);
    img = cv::imdecode(
        cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())),
        cv::IMREAD_COLOR);
  } catch (const FileError& e) {
    throw BadImage(path + ": " + e.reason());
  } catch (const std::invalid_argument& e) {  // read_image_header
    throw BadImage(path + ": " + e.what());
  } catch (const cv::Exception& e) {
    throw BadImage(path + ": cannot decode (" + e.err + ")");
  }
  if (img.empty()) throw BadImage(path + ": cannot decode (damaged image data)");
  const auto t0 = std::chrono::steady_clock::now();
  auto found = det.detect(ImageView::packed(PixelFormat::kBGR, img.data, img.cols, img.rows,
                                            static_cast<int>(img.step)));
  *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (keep) *keep = img;
  return found;
}

void draw(cv::Mat& img, const std::vector<Detection>& dets) {
  for (const auto& d : dets) {
    const cv::Scalar colour(0, 255, 0);
    cv::rectangle(img, cv::Point2f(d.x1, d.y1), cv::Point2f(d.x2, d.y2), colour, 2);
    char text[96];
    std::snprintf(text, sizeof text, "%s %.2f", d.label.c_str(), d.score);
    cv::putText(img, text, cv::Point2f(d.x1, std::max(12.f, d.y1 - 3)), cv::FONT_HERSHEY_SIMPLEX,
                0.45, colour, 1);
  }
}

// x y w h score, the WIDER prediction layout.
std::vector<std::array<double, 5>> wider_boxes(const std::vector<Detection>& dets) {
  std::vector<std::array<double, 5>> out;
  for (const auto& d : dets) out.push_back({d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1, d.score});
  return out;
}

// "WxH" (e.g. 1280x768) -> the Detector's input size override; "" leaves the model's.
void set_input_size(const std::string& text, DetectorOptions* o) {
  if (text.empty()) return;
  if (!parse_size(text, &o->input_width, &o->input_height)) {
    throw CLI::ValidationError("--input-size", "expected WxH, e.g. 1280x768, got '" + text + "'");
  }
}

struct DetectOptions {
  std::string model, input, format = "jsonl", output = "-", draw_dir, device = "cpu", input_size;
  std::string precision = "auto";
  float threshold = -1, iou_threshold = -1;
  int max_detections = -1, threads = 0;
};

void run_detect(const DetectOptions& o) {
  if (o.format != "jsonl" && o.format != "widerface") {
    throw CLI::ValidationError("--format", "must be jsonl or widerface, got '" + o.format + "'");
  }
  if (o.format == "widerface" && (o.output.empty() || o.output == "-")) {
    throw CLI::ValidationError("--output", "--format widerface writes a folder: give -o DIR");
  }
  DetectorOptions dopt;
  dopt.device = o.device;
  dopt.threads = o.threads;
  dopt.threshold = o.threshold;
  dopt.max_detections = o.max_detections;
  dopt.iou_threshold = o.iou_threshold;
  dopt.precision = o.precision;
  set_input_size(o.input_size, &dopt);
  Detector det(o.model, dopt);
  std::vector<fs::path> images;
  const fs::path root(o.input);
  // Entries that cannot be images (a symlink loop, a FIFO, a dangling link) are reported and
  // skipped like undecodable files; only the input itself must be a file or a folder.
  std::vector<std::string> skipped;
  std::error_code ec;
  if (fs::is_directory(root, ec)) {
    // Links to folders are followed, as the trainer's loaders follow them (a WIDER tree
    // assembled from links to event folders is the usual case); each folder is searched once,
    // so a link back up the tree or a second link to one folder is named and skipped.
    std::set<fs::path> searched{fs::weakly_canonical(root, ec)};
    for (auto it =
             fs::recursive_directory_iterator(root,
                                              fs::directory_options::skip_permission_denied |
                                                  fs::directory_options::follow_directory_symlink,
                                              ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code dir_ec;
      if (it->is_directory(dir_ec)) {
        const fs::path real = fs::weakly_canonical(it->path(), dir_ec);
        if (!dir_ec && !searched.insert(real).second) {
          it.disable_recursion_pending();
          skipped.push_back(it->path().string() + ": a link to a folder already searched (" +
                            real.string() + ")");
        }
        continue;
      }
      if (!is_image(it->path())) continue;
      const std::string problem = regular_file_problem(it->path().string());
      if (problem.empty()) {
        images.push_back(it->path());
      } else {
        skipped.push_back(it->path().string() + ": " + problem);
      }
    }
    if (ec) throw std::runtime_error("cannot list " + o.input + ": " + ec.message());
    std::sort(images.begin(), images.end());
  } else {
    const std::string problem = regular_file_problem(o.input);
    if (!problem.empty()) {
      throw std::runtime_error("input '" + o.input + "' " +
                               (problem == "no such file" ? "does not exist" : problem) +
                               " (give an image or a folder of images)");
    }
    images.push_back(root);
  }
  for (const auto& s : skipped) std::fprintf(stderr, "skipped %s\n", s.c_str());
  if (images.empty()) throw std::runtime_error("no images (.jpg, .png, .bmp) under " + o.input);
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (o.format == "jsonl" && o.output != "-") {
    if (fs::path(o.output).has_parent_path())
      fs::create_directories(fs::path(o.output).parent_path());
    file.open(o.output);
    if (!file) throw std::runtime_error("cannot write " + o.output);
    out = &file;
  }
  if (!o.draw_dir.empty()) fs::create_directories(o.draw_dir);
  size_t total = 0;
  double seconds = 0;
  size_t done = 0;
  for (const auto& path : images) {
    cv::Mat img;
    std::vector<Detection> dets;
    // One bad file (truncated, another format, too large for OpenCV) is reported by name and
    // skipped; the run goes on and fails at the end with the count.
    try {
      dets = detect_file(det, path.string(), &img, &seconds);
    } catch (const BadImage& e) {
      skipped.push_back(e.what());
      std::fprintf(stderr, "skipped %s\n", skipped.back().c_str());
      continue;
    }
    ++done;
    total += dets.size();
    if (o.format == "jsonl") {
      nlohmann::json row = {{"image", path.string()}, {"width", img.cols}, {"height", img.rows}};
      row["objects"] = nlohmann::json::array();
      for (const auto& d : dets) {
        row["objects"].push_back({{"x1", d.x1},
                                  {"y1", d.y1},
                                  {"x2", d.x2},
                                  {"y2", d.y2},
                                  {"score", d.score},
                                  {"label", d.label},
                                  {"label_id", d.label_id}});
      }
      *out << row.dump() << "\n";
    } else {
      // OUT/<event>/<image>.txt, the official layout: the event is the folder the image is in,
      // whether the input is the images root, one event folder or a single image.
      const fs::path event = fs::absolute(path).parent_path().filename();
      const std::string name = path.stem().string();
      write_wider_prediction((fs::path(o.output) / event / (name + ".txt")).string(), name,
                             wider_boxes(dets));
    }
    if (!o.draw_dir.empty()) {
      draw(img, dets);
      cv::imwrite((fs::path(o.draw_dir) / path.filename()).string(), img);
    }
  }
  std::fprintf(stderr, "%zu images, %zu detections, %.1f ms per image (detect, without decoding)\n",
               done, total, done ? 1000 * seconds / static_cast<double>(done) : 0.0);
  if (!skipped.empty()) {
    throw std::runtime_error(std::to_string(skipped.size()) +
                             " input files skipped (named above); the others were processed");
  }
}

}  // namespace

void add_detect(CLI::App& app) {
  auto* cmd = app.add_subcommand("detect", "Detect objects in an image or a folder of images");
  auto o = std::make_shared<DetectOptions>();
  add_model_option(*cmd, o->model);
  cmd->add_option("--input", o->input,
                  "an image, or a folder searched recursively (links to folders followed, each "
                  "folder once); a file that cannot be used "
                  "(damaged, not an image, over " +
                      std::to_string(kMaxImageFileBytes >> 20) + " MB or " +
                      std::to_string(kMaxImagePixels / 1000000) +
                      " megapixels) is named, skipped, and makes the exit status 1")
      ->required();
  cmd->add_option("--format", o->format,
                  "jsonl: one JSON object per image; widerface: OUT/<event>/<image>.txt for "
                  "images under DIR/<event>/")
      ->capture_default_str();
  cmd->add_option("-o,--output", o->output, "JSON lines file ('-' = stdout) or prediction folder")
      ->capture_default_str();
  cmd->add_option("--draw", o->draw_dir, "also write the images with boxes drawn to this folder");
  cmd->add_option("--threshold", o->threshold, "score threshold (default: the model's)");
  cmd->add_option("--max-detections", o->max_detections, "per image (default: the model's)");
  cmd->add_option("--iou-threshold", o->iou_threshold, "NMS IoU (default: the model's)");
  add_shared_option(*cmd, kDeviceOption, o->device);
  add_shared_option(*cmd, kPrecisionOption, o->precision);
  add_shared_option(*cmd, kThreadsOption, o->threads);
  cmd->add_option("--input-size", o->input_size,
                  "network input WxH instead of the model's (e.g. 1280x768: smaller faces, "
                  "4x the cost of 640x384)");
  cmd->callback([o] {
    if (o->model.empty()) o->model = default_model().path;
    run_detect(*o);
  });
}

namespace {

struct EvalOptions {
  std::string model, predictions, save_predictions, gt_dir, device = "cpu", input_size;
  // The model's own post-processing by default: AP is what detect and the element deliver.
  float threshold = -1, iou_threshold = -1;
  int max_detections = -1, threads = 0;
  std::string layout = "auto", precision = "auto";
  bool json = false;
};

std::string fmt(double v) {
  if (v < 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a model (or existing WIDER prediction files): COCO-style AP for --coco/--voc, "
      "the official WIDER FACE easy/medium/hard AP for --widerface");
  auto o = std::make_shared<EvalOptions>();
  auto data = std::make_shared<DatasetSources>();
  data->widerface_split = "val";
  add_model_option(*cmd, o->model);
  add_data_options(*cmd, *data);
  cmd->add_option("--predictions", o->predictions,
                  "WIDER: evaluate these prediction files (PRED/<event>/<image>.txt) instead of "
                  "running a model");
  cmd->add_option("--save-predictions", o->save_predictions,
                  "WIDER: also write the model's predictions in the official layout here");
  cmd->add_option("--gt", o->gt_dir,
                  "WIDER ground-truth folder with the .mat files (default: "
                  "ROOT/eval_tools/ground_truth)");
  cmd->add_option("--threshold", o->threshold,
                  "score threshold (default: the model's, as detect and the element use)");
  cmd->add_option("--max-detections", o->max_detections, "per image (default: the model's)");
  add_shared_option(*cmd, kLayoutOption, o->layout);
  add_shared_option(*cmd, kPrecisionOption, o->precision);
  cmd->add_option("--iou-threshold", o->iou_threshold, "NMS IoU (default: the model's)");
  add_shared_option(*cmd, kDeviceOption, o->device);
  add_shared_option(*cmd, kThreadsOption, o->threads);
  cmd->add_option("--input-size", o->input_size,
                  "network input WxH instead of the model's (e.g. 1280x768: smaller faces, "
                  "4x the cost of 640x384)");
  cmd->add_flag("--json", o->json, "print the result as JSON");
  cmd->callback([o, data] {
    auto& dd = *data;
    Dataset ds = load_datasets(dd, "eval");
    const bool wider = ds.name.rfind("widerface", 0) == 0;
    if (!o->model.empty() && !o->predictions.empty()) {
      throw CLI::ValidationError("eval", "give --model or --predictions, not both");
    }
    if (o->predictions.empty() && o->model.empty()) o->model = default_model().path;
    if (!o->predictions.empty() && !wider) {
      throw CLI::ValidationError("eval", "--predictions is for WIDER FACE prediction folders");
    }
    std::unique_ptr<Detector> det;
    if (!o->model.empty()) {
      DetectorOptions dopt;
      dopt.device = o->device;
      dopt.threads = o->threads;
      dopt.threshold = o->threshold;
      dopt.max_detections = o->max_detections;
      dopt.iou_threshold = o->iou_threshold;
      dopt.layout = o->layout;
      dopt.precision = o->precision;
      set_input_size(o->input_size, &dopt);
      det = std::make_unique<Detector>(o->model, dopt);
    }
    nlohmann::json result = {{"dataset", ds.name}, {"images", ds.samples.size()}};
    double seconds = 0;
    if (wider) {
      const std::string gt_dir =
          o->gt_dir.empty() ? dd.widerface + "/eval_tools/ground_truth" : o->gt_dir;
      const auto gt = load_wider_ground_truth(gt_dir);
      WiderPredictions preds;
      if (det) {
        for (const auto& s : ds.samples) {
          const auto slash = s.key.find('/');
          const std::string event = s.key.substr(0, slash), name = s.key.substr(slash + 1);
          auto boxes = wider_boxes(detect_file(*det, s.image, nullptr, &seconds));
          if (!o->save_predictions.empty()) {
            write_wider_prediction(o->save_predictions + "/" + event + "/" + name + ".txt", name,
                                   boxes);
          }
          if (!gt.events.count(event) || !gt.events.at(event).count(name)) {
            throw std::runtime_error("image " + s.key + " is not in the WIDER ground truth " +
                                     gt_dir);
          }
          preds[{event, name}] = std::move(boxes);
        }
      } else {
        preds = read_wider_predictions(o->predictions, gt);
      }
      const auto r = evaluate_wider(gt, preds);
      const char* names[3] = {"easy", "medium", "hard"};
      result["protocol"] = "widerface";
      result["evaluated_images"] = r.images;
      result["boxes"] = r.boxes;
      for (int s = 0; s < 3; ++s) {
        result[names[s]] = {
            {"ap", r.ap[s]}, {"faces", r.faces[s]}, {"max_recall", r.max_recall[s]}};
      }
      if (!o->json) {
        std::printf(
            "WIDER FACE protocol on %d images that have predictions (%d boxes); faces "
            "counted from those images only\n",
            r.images, r.boxes);
        std::printf("%-8s %8s %8s %10s\n", "setting", "AP", "faces", "max_recall");
        for (int s = 0; s < 3; ++s) {
          std::printf("%-8s %8s %8d %10.4f\n", names[s], fmt(r.ap[s]).c_str(), r.faces[s],
                      r.max_recall[s]);
        }
      }
    } else {
      // The model's classes are matched to the dataset's by name: a label id means nothing
      // across two class lists, and a model that knows none of the dataset's classes is an
      // error rather than an AP of 0.
      const auto& model_names = det->info().class_names;
      std::vector<int> to_dataset(model_names.size(), -1);
      int matched = 0;
      for (size_t m = 0; m < model_names.size(); ++m) {
        const auto it = std::find(ds.class_names.begin(), ds.class_names.end(), model_names[m]);
        if (it != ds.class_names.end()) {
          to_dataset[m] = static_cast<int>(it - ds.class_names.begin());
          ++matched;
        }
      }
      if (matched == 0) {
        throw std::runtime_error("the model's classes (" + model_names.front() +
                                 ", ...) match none of the dataset's (" + ds.class_names.front() +
                                 ", ...); use --class-map");
      }
      if (matched < static_cast<int>(ds.class_names.size())) {
        std::fprintf(stderr, "note: %d of the dataset's %zu classes are among the model's\n",
                     matched, ds.class_names.size());
      }
      std::vector<CocoDetection> dets;
      for (const auto& s : ds.samples) {
        auto found = detect_file(*det, s.image, nullptr, &seconds);
        for (const auto& f : found) {
          const int label = to_dataset[static_cast<size_t>(f.label_id)];
          if (label >= 0) dets.push_back({s.image_id, label, f.x1, f.y1, f.x2, f.y2, f.score});
        }
      }
      const auto r = evaluate_coco(ds, dets);
      result["protocol"] = "coco";
      result.update({{"ap", r.ap},
                     {"ap50", r.ap50},
                     {"ap75", r.ap75},
                     {"ap_small", r.ap_small},
                     {"ap_medium", r.ap_medium},
                     {"ap_large", r.ap_large},
                     {"ar100", r.ar100}});
      if (!o->json) {
        std::printf("COCO-style evaluation on %d images\n", r.images);
        std::printf("%8s %8s %8s %8s %8s %8s %8s\n", "AP", "AP50", "AP75", "APs", "APm", "APl",
                    "AR100");
        std::printf("%8s %8s %8s %8s %8s %8s %8s\n", fmt(r.ap).c_str(), fmt(r.ap50).c_str(),
                    fmt(r.ap75).c_str(), fmt(r.ap_small).c_str(), fmt(r.ap_medium).c_str(),
                    fmt(r.ap_large).c_str(), fmt(r.ar100).c_str());
      }
    }
    if (det) {
      result["ms_per_image"] = 1000 * seconds / std::max<size_t>(1, ds.samples.size());
      result["precision"] = det->precision();
      result["layout"] = det->layout();
    }
    if (o->json) std::cout << result.dump(2) << "\n";
  });
}

}  // namespace autoassign::cli
