/* SPDX-License-Identifier: MIT */
#include "roi_meta.h"

#include <algorithm>
#include <cmath>

namespace autoassign::gst {

void attach_detections(GstBuffer* buffer, const std::vector<Detection>& detections, int width,
                       int height, GstClockTime source_pts, const std::vector<int64_t>* ids) {
  // Without a frame size (no caps yet) no box can be placed or normalised.
  if (width <= 0 || height <= 0) return;
  for (size_t i = 0; i < detections.size(); ++i) {
    const auto& d = detections[i];
    const int x1 = std::clamp(static_cast<int>(std::floor(d.x1)), 0, width);
    const int y1 = std::clamp(static_cast<int>(std::floor(d.y1)), 0, height);
    const int x2 = std::clamp(static_cast<int>(std::ceil(d.x2)), 0, width);
    const int y2 = std::clamp(static_cast<int>(std::ceil(d.y2)), 0, height);
    GstVideoRegionOfInterestMeta* meta = gst_buffer_add_video_region_of_interest_meta(
        buffer, d.label.c_str(), static_cast<guint>(x1), static_cast<guint>(y1),
        static_cast<guint>(x2 - x1), static_cast<guint>(y2 - y1));
    GstStructure* s =
        gst_structure_new("detection", "x_min", G_TYPE_DOUBLE, static_cast<double>(d.x1) / width,
                          "y_min", G_TYPE_DOUBLE, static_cast<double>(d.y1) / height, "x_max",
                          G_TYPE_DOUBLE, static_cast<double>(d.x2) / width, "y_max", G_TYPE_DOUBLE,
                          static_cast<double>(d.y2) / height, "confidence", G_TYPE_DOUBLE,
                          static_cast<double>(d.score), "label_id", G_TYPE_INT, d.label_id, "label",
                          G_TYPE_STRING, d.label.c_str(), nullptr);
    gst_video_region_of_interest_meta_add_param(meta, s);  // takes ownership
    if (GST_CLOCK_TIME_IS_VALID(source_pts)) {
      gst_video_region_of_interest_meta_add_param(
          meta, gst_structure_new("autoassign", "source-pts", G_TYPE_UINT64,
                                  static_cast<guint64>(source_pts), nullptr));
    }
    if (ids && i < ids->size()) {
      // gvatrack's int: ids past 2^31 (years of new objects at 30 fps) wrap, never go negative.
      const int id = static_cast<int>((*ids)[i] % G_MAXINT);
      gst_video_region_of_interest_meta_add_param(
          meta, gst_structure_new("object_id", "id", G_TYPE_INT, id, nullptr));
    }
  }
}

void remove_rois(GstBuffer* buffer) {
  gst_buffer_foreach_meta(
      buffer,
      [](GstBuffer*, GstMeta** meta, gpointer) -> gboolean {
        if ((*meta)->info->api == GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE) *meta = nullptr;
        return TRUE;
      },
      nullptr);
}

std::vector<Roi> read_rois(GstBuffer* buffer) {
  std::vector<Roi> rois;
  gpointer state = nullptr;
  GstMeta* meta;
  while ((meta = gst_buffer_iterate_meta_filtered(buffer, &state,
                                                  GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    auto* m = reinterpret_cast<GstVideoRegionOfInterestMeta*>(meta);
    Roi r;
    // Other elements' metas are unsigned and unchecked: clamp so that x + w and y + h stay far
    // from int overflow (no frame is 2^20 pixels wide), and clean their text, which reaches
    // JSON and GLib strings (valid UTF-8 only).
    auto clamp = [](guint v) { return static_cast<int>(std::min<guint>(v, kMaxRoiCoordinate)); };
    r.x = clamp(m->x);
    r.y = clamp(m->y);
    r.w = clamp(m->w);
    r.h = clamp(m->h);
    r.roi_type = sanitize_utf8(m->roi_type ? g_quark_to_string(m->roi_type) : "");
    if (const GstStructure* s = gst_video_region_of_interest_meta_get_param(m, "detection")) {
      r.has_detection = true;
      gst_structure_get_double(s, "x_min", &r.x_min);
      gst_structure_get_double(s, "y_min", &r.y_min);
      gst_structure_get_double(s, "x_max", &r.x_max);
      gst_structure_get_double(s, "y_max", &r.y_max);
      gst_structure_get_double(s, "confidence", &r.confidence);
      gst_structure_get_int(s, "label_id", &r.label_id);
      if (const char* l = gst_structure_get_string(s, "label")) r.label = sanitize_utf8(l);
    }
    if (const GstStructure* s = gst_video_region_of_interest_meta_get_param(m, "autoassign")) {
      guint64 pts = GST_CLOCK_TIME_NONE;
      if (gst_structure_get_uint64(s, "source-pts", &pts)) r.source_pts = pts;
    }
    if (const GstStructure* s = gst_video_region_of_interest_meta_get_param(m, "object_id")) {
      int id = -1;
      if (gst_structure_get_int(s, "id", &id)) r.object_id = id;
    }
    rois.push_back(std::move(r));
  }
  return rois;
}

}  // namespace autoassign::gst
