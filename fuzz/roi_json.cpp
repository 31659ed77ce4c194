// SPDX-License-Identifier: MIT
// ROI metas from other elements -> JSON (what autoassignjson writes): any roi_type, label and
// coordinates a producer may attach come back as valid JSON, with coordinates clamped so that
// x + w cannot overflow. Input: 4 x u32 x, y, w, h; f64 confidence; i32 label_id; 1 flag byte
// (bit 0: attach a "detection" structure); then roi_type, NUL, label.
#include <cstdlib>
#include <cstring>

#include <gst/gst.h>
#include <nlohmann/json.hpp>

#include "frame_json.h"
#include "roi_meta.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gst_init(nullptr, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 29) return 0;
  guint32 box[4];
  double confidence;
  gint32 label_id;
  std::memcpy(box, data, 16);
  std::memcpy(&confidence, data + 16, 8);
  std::memcpy(&label_id, data + 24, 4);
  const bool detection = data[28] & 1;
  const std::string rest(reinterpret_cast<const char*>(data + 29), size - 29);
  const auto nul = rest.find('\0');
  const std::string roi_type = rest.substr(0, nul);
  const std::string label = nul == std::string::npos ? "" : rest.substr(nul + 1);
  GstBuffer* buffer = gst_buffer_new();
  auto* meta = gst_buffer_add_video_region_of_interest_meta(buffer, roi_type.c_str(), box[0],
                                                            box[1], box[2], box[3]);
  if (detection) {
    gst_video_region_of_interest_meta_add_param(
        meta, gst_structure_new("detection", "x_min", G_TYPE_DOUBLE, confidence, "y_min",
                                G_TYPE_DOUBLE, -confidence, "x_max", G_TYPE_DOUBLE,
                                1.0 / confidence, "y_max", G_TYPE_DOUBLE, confidence * 1e300,
                                "confidence", G_TYPE_DOUBLE, confidence, "label_id", G_TYPE_INT,
                                label_id, "label", G_TYPE_STRING, label.c_str(), nullptr));
  }
  for (const auto& r : autoassign::gst::read_rois(buffer)) {
    if (r.x < 0 || r.y < 0 || r.w < 0 || r.h < 0 ||
        static_cast<guint>(r.x) > autoassign::gst::kMaxRoiCoordinate ||
        static_cast<guint>(r.w) > autoassign::gst::kMaxRoiCoordinate) {
      std::abort();
    }
    const std::string text = autoassign::gst::json_text(autoassign::gst::roi_to_json(r));
    (void)nlohmann::json::parse(text);  // throws (reported) if what we write is not JSON
  }
  gst_buffer_unref(buffer);
  return 0;
}
