/* SPDX-License-Identifier: MIT */
#include "model_pool.h"

#include <stdexcept>

#include "autoassign/core/files.h"
#include "autoassign/core/shared_cache.h"
#include "autoassign/core/types.h"
#include "autoassign/infer/checkpoint.h"

namespace autoassign::gst {
namespace {

SharedCache<Detector>& pool() {
  static SharedCache<Detector> p;
  return p;
}

// Builds a Detector from the settings; throws what the library throws. Problems that do not
// stop it (a label that is not UTF-8) go to `warnings`.
std::shared_ptr<Detector> make_detector(const ModelSpec& s, std::vector<std::string>* warnings) {
  DetectorOptions o;
  o.device = s.device;
  o.threads = s.threads;
  o.precision = s.precision;
  if (!s.input_size.empty() && !parse_size(s.input_size, &o.input_width, &o.input_height)) {
    throw std::invalid_argument("input-size must be WxH (e.g. 960x576), got '" +
                                sanitize_utf8(s.input_size) + "'");
  }
  auto det = std::make_shared<Detector>(s.model_file, o);
  if (!s.labels_file.empty()) {
    // Capped by the bytes read and refused unless a regular file (autoassign/core/files.h).
    auto names = read_labels_file(s.labels_file, warnings);
    try {
      det->set_class_names(names);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("labels file '" + s.labels_file + "': " + e.what());
    }
  }
  return det;
}

}  // namespace

std::string ModelSpec::key() const {
  return model_file + '\n' + device + '\n' + std::to_string(threads) + '\n' + labels_file + '\n' +
         input_size + '\n' + precision;
}

std::shared_ptr<Detector> acquire_model(const ModelSpec& spec, std::vector<std::string>* warnings,
                                        bool fresh) {
  return pool().acquire(
      spec.key(), [&] { return make_detector(spec, warnings); }, fresh);
}

void keep_models(bool keep) { pool().keep(keep); }

bool keeping_models() { return pool().keeping(); }

size_t loaded_models() { return pool().alive(); }

void post_model_error(GstElement* self, const std::exception& e) {
  using Kind = ModelFileError::Kind;
  // Paths and messages may hold bytes that are not UTF-8; GLib needs valid text.
  const std::string msg = sanitize_utf8(e.what());
  if (auto* mf = dynamic_cast<const ModelFileError*>(&e)) {
    switch (mf->kind()) {
      case Kind::kNotFound:
        GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("%s", msg.c_str()), (nullptr));
        return;
      case Kind::kVersion:
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("%s", msg.c_str()), (nullptr));
        return;
      default:
        GST_ELEMENT_ERROR(self, RESOURCE, READ, ("%s", msg.c_str()), (nullptr));
        return;
    }
  }
  // A labels file that cannot be found: RESOURCE NOT_FOUND, like a missing model file.
  if (auto* f = dynamic_cast<const FileError*>(&e); f && f->kind() == FileError::Kind::kNotFound) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("%s", msg.c_str()), (nullptr));
    return;
  }
  if (dynamic_cast<const DeviceError*>(&e)) {
    GST_ELEMENT_ERROR(self, LIBRARY, INIT, ("%s", msg.c_str()), (nullptr));
    return;
  }
  GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("%s", msg.c_str()), (nullptr));
}

}  // namespace autoassign::gst
