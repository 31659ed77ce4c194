/* SPDX-License-Identifier: MIT */
// The process's loaded models, shared by its autoassigndetect elements: N camera pipelines in
// one process hold one copy of the weights. A model is loaded from a ModelSpec (model file,
// device, threads, labels file, input size, precision: what changes the Detector); thresholds
// are per element and per call, so sharing changes no behaviour. Also the one mapping of a
// load failure to its GStreamer error.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <gst/gst.h>

#include "autoassign/infer/detector.h"

namespace autoassign::gst {

struct ModelSpec {
  std::string model_file;
  std::string device = "cpu";
  int threads = 0;
  std::string labels_file;  ///< "" = the model's own class names
  std::string input_size;   ///< "WxH" or "" (the model's)
  std::string precision = "auto";
  /// Equal keys share one Detector.
  std::string key() const;
};

/// The shared Detector for `spec`, loaded if no element holds it (and the pool does not keep
/// it). `fresh` (a model-file set while playing) reads the file again, since it may have
/// changed on disk, and the result becomes the shared copy for later users. Throws what
/// loading throws (ModelFileError, FileError, DeviceError, std::invalid_argument); problems
/// that do not stop it (a label that is not UTF-8) go to `warnings`.
std::shared_ptr<Detector> acquire_model(const ModelSpec& spec, std::vector<std::string>* warnings,
                                        bool fresh = false);

/// keep = true: every model loaded from now on, and those loaded now, stay loaded with no user
/// until keep = false (a service that restarts pipelines reads each model file once, and its
/// memory does not grow and shrink with every restart). Process-wide, like the pool.
void keep_models(bool keep);
bool keeping_models();
/// Models loaded now (in use or kept).
size_t loaded_models();

/// Posts the element error a failed load calls for: RESOURCE NOT_FOUND (no model or labels
/// file), RESOURCE SETTINGS (another format version, bad settings), RESOURCE READ (a damaged
/// file), LIBRARY INIT (a device this LibTorch lacks). The message names the path or value.
void post_model_error(GstElement* element, const std::exception& e);

}  // namespace autoassign::gst
