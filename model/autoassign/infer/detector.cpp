// SPDX-License-Identifier: MIT
#include "autoassign/infer/detector.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/device.h"
#include "autoassign/infer/postprocess.h"
#include "autoassign/infer/preprocess.h"

namespace autoassign {

namespace {

// The model's input policy with the caller's size, if one was given (checked).
InputConfig input_for(InputConfig in, const DetectorOptions& o) {
  if (o.input_width == 0 && o.input_height == 0) return in;
  if (o.input_width <= 0 || o.input_height <= 0) {
    throw std::invalid_argument("input size must be W x H with both > 0, got " +
                                std::to_string(o.input_width) + "x" +
                                std::to_string(o.input_height));
  }
  if (in.resize == "fit") {
    if (o.input_width % in.size_divisor != 0 || o.input_height % in.size_divisor != 0) {
      throw std::invalid_argument("input size " + std::to_string(o.input_width) + "x" +
                                  std::to_string(o.input_height) + " must be a multiple of " +
                                  std::to_string(in.size_divisor));
    }
    in.width = o.input_width;
    in.height = o.input_height;
  } else {
    in.short_side = std::min(o.input_width, o.input_height);
    in.long_side = std::max(o.input_width, o.input_height);
  }
  return in;
}

}  // namespace

struct Detector::Impl {
  Impl(const std::string& path, const DetectorOptions& options)
      : device(torch_device(Device::parse(options.device))),
        model(load_model(path, torch::kCPU)),
        preprocessor(input_for(model->config().input, options)) {
    int threads = options.threads;
    if (threads < 0)
      throw std::invalid_argument("threads must be >= 0, got " + std::to_string(threads));
    threads = resolve_threads(threads);
    torch::set_num_threads(threads);
    model->prepare_for_inference();
    model->to(device);
    if (options.layout != "auto" && options.layout != "nchw" && options.layout != "nhwc") {
      throw std::invalid_argument("layout must be auto, nchw or nhwc, got '" + options.layout +
                                  "'");
    }
    const bool nhwc = options.layout == "nhwc" || (options.layout == "auto" && device.is_cpu());
    precision = resolve_precision(options.precision, options.device);
    model->set_precision(precision == "bf16"   ? torch::kBFloat16
                         : precision == "fp16" ? torch::kHalf
                                               : torch::kFloat);
    model->set_channels_last(nhwc);
    const ModelConfig& c = model->config();
    post = c.postprocess;
    info.name = c.name;
    info.num_classes = c.num_classes;
    info.class_names = c.class_names;
    info.config_json = c.to_json();
  }

  torch::Device device;
  std::string precision;
  AutoAssign model;
  Preprocessor preprocessor;
  ModelInfo info;
  mutable std::mutex mutex;  // guards post and info.class_names (changed while detecting)
  PostprocessConfig post;
};

Detector::Detector(const std::string& model_path, const DetectorOptions& options)
    : impl_(std::make_unique<Impl>(model_path, options)) {
  // "Unset" is a negative value; NaN is not unset but a bad value the setters refuse (it
  // failed `>= 0` and silently meant the model's default).
  if (!(options.threshold < 0)) set_threshold(options.threshold);
  if (!(options.iou_threshold < 0)) set_iou_threshold(options.iou_threshold);
  if (options.max_detections >= 0) set_max_detections(options.max_detections);
}

Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

namespace {

void check_threshold(float threshold) {
  if (!(threshold >= 0 && threshold <= 1)) {
    throw std::invalid_argument("threshold must be in [0, 1], got " + std::to_string(threshold));
  }
}
void check_iou_threshold(float iou_threshold) {
  if (!(iou_threshold > 0 && iou_threshold <= 1)) {
    throw std::invalid_argument("iou threshold must be in (0, 1], got " +
                                std::to_string(iou_threshold));
  }
}
void check_max_detections(int max_detections) {
  if (max_detections < 1) {
    throw std::invalid_argument("max detections must be >= 1, got " +
                                std::to_string(max_detections));
  }
}

}  // namespace

std::vector<Detection> Detector::detect(const ImageView& image) const {
  return detect_batch({image}, DetectParams{})[0];
}

std::vector<Detection> Detector::detect(const ImageView& image, const DetectParams& params) const {
  return detect_batch({image}, params)[0];
}

std::vector<std::vector<Detection>> Detector::detect(const std::vector<ImageView>& images) const {
  return detect_batch(images, DetectParams{});
}

std::vector<std::vector<Detection>> Detector::detect_batch(const std::vector<ImageView>& images,
                                                           const DetectParams& params) const {
  if (images.empty()) return {};
  PostprocessConfig post;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    post = impl_->post;
    names = impl_->info.class_names;
  }
  if (!(params.threshold < 0)) {
    check_threshold(params.threshold);
    post.score_threshold = params.threshold;
  }
  if (!(params.iou_threshold < 0)) {
    check_iou_threshold(params.iou_threshold);
    post.nms_iou = params.iou_threshold;
  }
  if (params.max_detections >= 0) {
    check_max_detections(params.max_detections);
    post.max_detections = params.max_detections;
  }
  c10::InferenceMode inference;
  std::vector<ImageGeometry> geometry;
  auto input = impl_->preprocessor.batch(images, &geometry, impl_->device);
  auto out = impl_->model->forward(input);
  std::vector<std::vector<Detection>> results(images.size());
  for (size_t b = 0; b < images.size(); ++b) {
    auto det =
        postprocess(out, static_cast<int64_t>(b), impl_->model->strides(), post, geometry[b]);
    auto boxes = det.boxes.to(torch::kCPU).contiguous();
    auto scores = det.scores.to(torch::kCPU).contiguous();
    auto labels = det.labels.to(torch::kCPU).contiguous();
    const float* bp = boxes.data_ptr<float>();
    for (int64_t i = 0; i < boxes.size(0); ++i) {
      Detection d;
      d.x1 = bp[4 * i];
      d.y1 = bp[4 * i + 1];
      d.x2 = bp[4 * i + 2];
      d.y2 = bp[4 * i + 3];
      d.score = scores[i].item<float>();
      d.label_id = static_cast<int>(labels[i].item<int64_t>());
      d.label = names.at(static_cast<size_t>(d.label_id));
      results[b].push_back(std::move(d));
    }
  }
  return results;
}

void Detector::set_threshold(float threshold) {
  check_threshold(threshold);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->post.score_threshold = threshold;
}

void Detector::set_iou_threshold(float iou_threshold) {
  check_iou_threshold(iou_threshold);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->post.nms_iou = iou_threshold;
}

void Detector::set_max_detections(int max_detections) {
  check_max_detections(max_detections);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->post.max_detections = max_detections;
}

void Detector::set_class_names(const std::vector<std::string>& names) {
  if (static_cast<int>(names.size()) != impl_->info.num_classes) {
    throw std::invalid_argument("the model has " + std::to_string(impl_->info.num_classes) +
                                " classes but " + std::to_string(names.size()) +
                                " label names were given");
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->info.class_names = names;
}

float Detector::threshold() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->post.score_threshold;
}
float Detector::iou_threshold() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->post.nms_iou;
}
int Detector::max_detections() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->post.max_detections;
}
const ModelInfo& Detector::info() const { return impl_->info; }
std::string Detector::device() const { return impl_->device.str(); }

std::string Detector::layout() const { return impl_->model->channels_last() ? "nhwc" : "nchw"; }

std::string Detector::precision() const { return impl_->precision; }

}  // namespace autoassign
