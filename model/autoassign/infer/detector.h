// SPDX-License-Identifier: MIT
// The Detector facade: load a model file, detect objects in frames. The only API the plugin
// and the CLI's detect use. Torch-free (pimpl), so including it costs nothing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "autoassign/core/types.h"
#include "autoassign/infer/device.h"

namespace autoassign {

struct DetectorOptions {
  std::string device = "cpu";  ///< "cpu", "cuda" or "cuda:N"
  /// LibTorch intra-op threads (process-wide); 0 = one per core.
  int threads = 0;
  float threshold = -1.0f;      ///< score threshold; < 0 = the model's (0.05)
  float iou_threshold = -1.0f;  ///< class-aware NMS IoU; < 0 = the model's (0.6)
  int max_detections = -1;      ///< < 0 = the model's
  /// Network input size instead of the model's (0 = the model's): "fit" models letterbox into
  /// input_width x input_height (multiples of 32); "short_long" models take the smaller as the
  /// short side and the larger as the long-side cap. Larger finds smaller objects, at a cost
  /// that grows with the area.
  int input_width = 0, input_height = 0;
  /// Memory layout of weights and activations: "nchw", "nhwc" (channels-last) or "auto":
  /// NHWC on CPUs, where oneDNN runs these networks' convolutions 15-25% faster (measured
  /// with `autoassign bench --layout nchw,nhwc`), NCHW on CUDA. Outputs are the same.
  std::string layout = "auto";
  /// Arithmetic of the network: "fp32", "bf16" (CPUs with AVX-512; fast only with AMX or
  /// AVX512-BF16), "fp16" (CUDA only) or "auto": bf16 on CPUs that have AMX or AVX512-BF16
  /// (asked of CPUID, see cpu_features()) unless ONEDNN_MAX_CPU_ISA caps oneDNN below them,
  /// fp32 elsewhere, CUDA included. Pixel normalisation,
  /// the head's predictors, box decoding, scores and NMS stay fp32 in every case.
  std::string precision = "auto";
};

/// Per-call post-processing overrides (< 0 = the detector's current setting). Lets several
/// users share one loaded Detector, each with its own thresholds, without touching its state.
struct DetectParams {
  float threshold = -1.0f;
  float iou_threshold = -1.0f;
  int max_detections = -1;
};

struct ModelInfo {
  std::string name;
  int num_classes = 0;
  std::vector<std::string> class_names;
  std::string config_json;
};

class Detector {
 public:
  /// Loads a model file. Throws ModelFileError (file problems), DeviceError (CUDA asked for
  /// and not available) or std::invalid_argument (bad option, naming it).
  explicit Detector(const std::string& model_path, const DetectorOptions& options = {});
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;

  /// Detections in the frame's pixels, best first. Safe to call from several threads.
  std::vector<Detection> detect(const ImageView& image) const;
  /// The same with this call's thresholds (checked as the setters check them).
  std::vector<Detection> detect(const ImageView& image, const DetectParams& params) const;
  /// One forward pass over a batch; equal to detecting one by one.
  std::vector<std::vector<Detection>> detect(const std::vector<ImageView>& images) const;

  /// Apply from the next detect() call on; values are checked (std::invalid_argument).
  void set_threshold(float threshold);
  void set_iou_threshold(float iou_threshold);
  void set_max_detections(int max_detections);
  /// Replaces the label names (e.g. from a labels file); must have num_classes entries.
  void set_class_names(const std::vector<std::string>& names);

  float threshold() const;
  float iou_threshold() const;
  int max_detections() const;
  const ModelInfo& info() const;
  std::string device() const;
  /// The layout in use, "nchw" or "nhwc" (what "auto" chose).
  std::string layout() const;
  /// The precision in use, "fp32", "bf16" or "fp16" (what "auto" chose).
  std::string precision() const;

 private:
  std::vector<std::vector<Detection>> detect_batch(const std::vector<ImageView>& images,
                                                   const DetectParams& params) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace autoassign
