/* SPDX-License-Identifier: MIT */
#include "inference_mark.h"

#include <gst/video/video.h>

namespace autoassign::gst {

namespace {

constexpr const char* kInferenceMeta = "AutoAssignInferenceMeta";

void register_inference_meta() {
  static const GstMetaInfo* info = [] {
    // No tags: the mark survives elements that drop metas tied to the frame's geometry or
    // colours (videoscale, videoconvert), as it describes neither.
    static const gchar* tags[] = {nullptr};
    return gst_meta_register_custom(kInferenceMeta, tags, nullptr, nullptr, nullptr);
  }();
  (void)info;
}

}  // namespace

void mark_inference(GstBuffer* buffer, bool fresh, double inference_ms) {
  register_inference_meta();
  GstCustomMeta* meta = gst_buffer_get_custom_meta(buffer, kInferenceMeta);
  if (!meta) meta = gst_buffer_add_custom_meta(buffer, kInferenceMeta);
  if (!meta) return;
  GstStructure* s = gst_custom_meta_get_structure(meta);
  gst_structure_set(s, "fresh", G_TYPE_BOOLEAN, fresh, nullptr);
  if (fresh) {
    gst_structure_set(s, "inference-ms", G_TYPE_DOUBLE, inference_ms, nullptr);
  } else {
    gst_structure_remove_field(s, "inference-ms");
  }
}

int read_inference_mark(GstBuffer* buffer, double* inference_ms) {
  register_inference_meta();
  if (inference_ms) *inference_ms = 0;
  GstCustomMeta* meta = gst_buffer_get_custom_meta(buffer, kInferenceMeta);
  gboolean fresh = FALSE;
  if (!meta || !gst_structure_get_boolean(gst_custom_meta_get_structure(meta), "fresh", &fresh)) {
    return -1;
  }
  if (fresh && inference_ms) {
    gst_structure_get_double(gst_custom_meta_get_structure(meta), "inference-ms", inference_ms);
  }
  return fresh ? 1 : 0;
}

}  // namespace autoassign::gst
