/* SPDX-License-Identifier: MIT */
#include "roi.h"

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

bool to_pixel_format(GstVideoFormat format, PixelFormat* out) {
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
      *out = PixelFormat::kRGB;
      return true;
    case GST_VIDEO_FORMAT_BGR:
      *out = PixelFormat::kBGR;
      return true;
    case GST_VIDEO_FORMAT_RGBx:
      *out = PixelFormat::kRGBx;
      return true;
    case GST_VIDEO_FORMAT_BGRx:
      *out = PixelFormat::kBGRx;
      return true;
    case GST_VIDEO_FORMAT_RGBA:
      *out = PixelFormat::kRGBA;
      return true;
    case GST_VIDEO_FORMAT_BGRA:
      *out = PixelFormat::kBGRA;
      return true;
    case GST_VIDEO_FORMAT_NV12:
      *out = PixelFormat::kNV12;
      return true;
    case GST_VIDEO_FORMAT_I420:
      *out = PixelFormat::kI420;
      return true;
    case GST_VIDEO_FORMAT_GRAY8:
      *out = PixelFormat::kGRAY8;
      return true;
    default:
      return false;
  }
}

ImageView frame_view(const GstVideoFrame* frame) {
  ImageView v;
  if (!to_pixel_format(GST_VIDEO_FRAME_FORMAT(frame), &v.format)) {
    throw std::invalid_argument(std::string("unsupported video format ") +
                                gst_video_format_to_string(GST_VIDEO_FRAME_FORMAT(frame)));
  }
  v.width = GST_VIDEO_FRAME_WIDTH(frame);
  v.height = GST_VIDEO_FRAME_HEIGHT(frame);
  // The caps' colorimetry decides the YUV matrix (BT.709 for HD cameras) and range.
  const GstVideoColorimetry& colour = GST_VIDEO_INFO_COLORIMETRY(&frame->info);
  v.matrix = colour.matrix == GST_VIDEO_COLOR_MATRIX_BT709    ? YuvMatrix::kBT709
             : colour.matrix == GST_VIDEO_COLOR_MATRIX_BT2020 ? YuvMatrix::kBT2020
                                                              : YuvMatrix::kBT601;
  v.full_range = colour.range == GST_VIDEO_COLOR_RANGE_0_255;
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(frame) && p < 3; ++p) {
    v.planes[p] = static_cast<const std::uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(frame, p));
    v.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE(frame, p);
    // The bytes mapped from the plane's start to the end of the memory holding it, so that a
    // GstVideoMeta whose strides or offsets overrun the buffer is refused, not read past.
    for (guint m = 0; m < GST_VIDEO_FRAME_N_PLANES(frame); ++m) {
      const GstMapInfo& map = frame->map[m];
      if (!map.data || map.size == 0) continue;
      if (v.planes[p] >= map.data && v.planes[p] < map.data + map.size) {
        v.sizes[p] = static_cast<std::size_t>(map.data + map.size - v.planes[p]);
        break;
      }
    }
  }
  return v;
}

nlohmann::json roi_to_json(const Roi& r) {
  nlohmann::json o = {{"x", r.x}, {"y", r.y}, {"w", r.w}, {"h", r.h}, {"roi_type", r.roi_type}};
  if (r.object_id >= 0) o["id"] = r.object_id;
  if (r.has_detection) {
    o["detection"] = {
        {"bounding_box",
         {{"x_min", r.x_min}, {"y_min", r.y_min}, {"x_max", r.x_max}, {"y_max", r.y_max}}},
        {"confidence", r.confidence},
        {"label", r.label},
        {"label_id", r.label_id}};
  }
  return o;
}

nlohmann::json frame_to_json(GstBuffer* buffer, const std::vector<Roi>& rois, int width, int height,
                             const std::string& source) {
  nlohmann::json frame;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  frame["timestamp"] = GST_CLOCK_TIME_IS_VALID(pts) ? static_cast<int64_t>(pts) : -1;
  frame["resolution"] = {{"width", width}, {"height", height}};
  if (!source.empty()) frame["source"] = source;
  frame["objects"] = nlohmann::json::array();
  for (const auto& r : rois) frame["objects"].push_back(roi_to_json(r));
  return frame;
}

// JSON must be valid UTF-8: read_rois and the json element's source property clean their text
// (invalid bytes become U+FFFD), and dump() replaces rather than throws as a last line of
// defence.
std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void add_any_video_pads(GstElementClass* element_class) {
  GstCaps* caps = gst_caps_from_string("video/x-raw; video/x-raw(ANY)");
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, caps));
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, caps));
  gst_caps_unref(caps);
}

}  // namespace autoassign::gst
