/* SPDX-License-Identifier: MIT */
/**
 * SECTION:element-autoassignoverlay
 *
 * Draws the #GstVideoRegionOfInterestMeta of each frame: a box, and the label and confidence
 * (from the "detection" parameter, as autoassigndetect and DL Streamer write it), one colour
 * per label. RGB-family frames are drawn directly; NV12 and I420 are drawn in their own luma
 * and chroma planes, with no round trip through RGB.
 *
 * |[
 * gst-launch-1.0 videotestsrc ! video/x-raw,format=NV12 ! \
 *     autoassigndetect model-file=face-rt.pt ! autoassignoverlay line-width=3 ! autovideosink
 * ]|
 */
#include "gstautoassignoverlay.h"

#include <cstdio>
#include <mutex>

#include <opencv2/imgproc.hpp>

#include "element.h"
#include "roi_meta.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_overlay_debug);
#define GST_CAT_DEFAULT gst_auto_assign_overlay_debug

enum { PROP_0, PROP_LINE_WIDTH, PROP_FONT_SCALE, PROP_SHOW_LABELS, PROP_SHOW_CONFIDENCE };

#define DEFAULT_LINE_WIDTH 2
#define DEFAULT_FONT_SCALE 0.5
#define DEFAULT_SHOW_LABELS TRUE
#define DEFAULT_SHOW_CONFIDENCE TRUE

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx, BGRx, RGBA, BGRA, NV12, I420 }")

namespace {

struct OverlaySettings {
  int line_width = DEFAULT_LINE_WIDTH;
  double font_scale = DEFAULT_FONT_SCALE;
  bool show_labels = DEFAULT_SHOW_LABELS;
  bool show_confidence = DEFAULT_SHOW_CONFIDENCE;
};

struct Rgb {
  double r, g, b;
};

// A fixed palette of well-separated colours; label i takes entry i mod size.
Rgb colour_for(int label_id, const std::string& roi_type) {
  static const Rgb kPalette[] = {{0, 255, 0},   {255, 64, 64},  {64, 128, 255}, {255, 200, 0},
                                 {255, 0, 255}, {0, 255, 255},  {255, 128, 0},  {128, 0, 255},
                                 {0, 160, 80},  {200, 200, 200}};
  const size_t n = sizeof kPalette / sizeof kPalette[0];
  const size_t i =
      label_id >= 0 ? static_cast<size_t>(label_id) % n : std::hash<std::string>{}(roi_type) % n;
  return kPalette[i];
}

// BT.601 limited range, the inverse of what the library's YUV reader uses.
void rgb_to_yuv(const Rgb& c, double& y, double& u, double& v) {
  y = 16 + 0.257 * c.r + 0.504 * c.g + 0.098 * c.b;
  u = 128 - 0.148 * c.r - 0.291 * c.g + 0.439 * c.b;
  v = 128 + 0.439 * c.r - 0.368 * c.g - 0.071 * c.b;
}

std::string caption(const autoassign::gst::Roi& r, const OverlaySettings& s) {
  std::string text;
  if (s.show_labels) text = r.has_detection && !r.label.empty() ? r.label : r.roi_type;
  // A tracker's id (autoassigntrack, gvatrack) right after the label: "face #12".
  if (s.show_labels && r.object_id >= 0) text += " #" + std::to_string(r.object_id);
  if (s.show_confidence && r.has_detection) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%.2f", text.empty() ? "" : " ", r.confidence);
    text += buf;
  }
  return text;
}

}  // namespace

struct _GstAutoAssignOverlay {
  GstVideoFilter parent;
  std::mutex* lock;  // guards settings
  OverlaySettings* settings;
};

G_DEFINE_TYPE(GstAutoAssignOverlay, gst_auto_assign_overlay, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE(autoassignoverlay, "autoassignoverlay", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_OVERLAY);

namespace {

cv::Mat plane(GstVideoFrame* frame, guint p, int type, int w, int h) {
  return cv::Mat(h, w, type, GST_VIDEO_FRAME_PLANE_DATA(frame, p),
                 static_cast<size_t>(GST_VIDEO_FRAME_PLANE_STRIDE(frame, p)));
}

GstFlowReturn draw(GstAutoAssignOverlay* self, GstVideoFrame* frame) {
  OverlaySettings s;
  {
    std::lock_guard<std::mutex> lock(*self->lock);
    s = *self->settings;
  }
  const auto rois = autoassign::gst::read_rois(frame->buffer);
  if (rois.empty()) return GST_FLOW_OK;
  const int w = GST_VIDEO_FRAME_WIDTH(frame), h = GST_VIDEO_FRAME_HEIGHT(frame);
  const GstVideoFormat format = GST_VIDEO_FRAME_FORMAT(frame);
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  for (const auto& r : rois) {
    const Rgb c = colour_for(r.has_detection ? r.label_id : -1, r.roi_type);
    const cv::Rect box(r.x, r.y, std::max(1, r.w), std::max(1, r.h));
    const std::string text = caption(r, s);
    int baseline = 0;
    const cv::Size ts =
        text.empty() ? cv::Size() : cv::getTextSize(text, font, s.font_scale, 1, &baseline);
    // The caption sits on a filled bar above the box (inside the frame if the box is at the top).
    const int bar_y = std::max(0, r.y - ts.height - baseline - 2);
    const cv::Rect bar(r.x, bar_y, ts.width + 4, ts.height + baseline + 2);
    switch (format) {
      case GST_VIDEO_FORMAT_NV12:
      case GST_VIDEO_FORMAT_I420: {
        double y, u, v;
        rgb_to_yuv(c, y, u, v);
        cv::Mat luma = plane(frame, 0, CV_8UC1, w, h);
        cv::rectangle(luma, box, cv::Scalar(y), s.line_width);
        if (!text.empty()) cv::rectangle(luma, bar, cv::Scalar(y), cv::FILLED);
        // Chroma planes are half size: halve the geometry, keep at least one pixel of line.
        const cv::Rect cbox(box.x / 2, box.y / 2, std::max(1, box.width / 2),
                            std::max(1, box.height / 2));
        const cv::Rect cbar(bar.x / 2, bar.y / 2, std::max(1, bar.width / 2),
                            std::max(1, bar.height / 2));
        const int cw = std::max(1, s.line_width / 2);
        const int pw = (w + 1) / 2, ph = (h + 1) / 2;
        if (format == GST_VIDEO_FORMAT_NV12) {
          cv::Mat uv = plane(frame, 1, CV_8UC2, pw, ph);
          cv::rectangle(uv, cbox, cv::Scalar(u, v), cw);
          if (!text.empty()) cv::rectangle(uv, cbar, cv::Scalar(u, v), cv::FILLED);
        } else {
          cv::Mat up = plane(frame, 1, CV_8UC1, pw, ph), vp = plane(frame, 2, CV_8UC1, pw, ph);
          cv::rectangle(up, cbox, cv::Scalar(u), cw);
          cv::rectangle(vp, cbox, cv::Scalar(v), cw);
          if (!text.empty()) {
            cv::rectangle(up, cbar, cv::Scalar(u), cv::FILLED);
            cv::rectangle(vp, cbar, cv::Scalar(v), cv::FILLED);
          }
        }
        if (!text.empty()) {
          // Dark text on light colours, light on dark: luma only, readable in any chroma.
          cv::putText(luma, text, cv::Point(bar.x + 2, bar.y + ts.height + 1), font, s.font_scale,
                      cv::Scalar(y > 128 ? 16 : 235), 1, cv::LINE_AA);
        }
        break;
      }
      default: {
        const bool four = GST_VIDEO_FORMAT_INFO_N_COMPONENTS(frame->info.finfo) == 4 ||
                          format == GST_VIDEO_FORMAT_RGBx || format == GST_VIDEO_FORMAT_BGRx;
        cv::Mat img = plane(frame, 0, four ? CV_8UC4 : CV_8UC3, w, h);
        const bool rgb_order = format == GST_VIDEO_FORMAT_RGB || format == GST_VIDEO_FORMAT_RGBx ||
                               format == GST_VIDEO_FORMAT_RGBA;
        const cv::Scalar col =
            rgb_order ? cv::Scalar(c.r, c.g, c.b, 255) : cv::Scalar(c.b, c.g, c.r, 255);
        cv::rectangle(img, box, col, s.line_width);
        if (!text.empty()) {
          cv::rectangle(img, bar, col, cv::FILLED);
          const double luma = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b;
          const cv::Scalar ink =
              luma > 128 ? cv::Scalar(0, 0, 0, 255) : cv::Scalar(255, 255, 255, 255);
          cv::putText(img, text, cv::Point(bar.x + 2, bar.y + ts.height + 1), font, s.font_scale,
                      ink, 1, cv::LINE_AA);
        }
        break;
      }
    }
  }
  return GST_FLOW_OK;
}

// OpenCV's drawing can throw (allocation): never into GStreamer's C code.
GstFlowReturn overlay_transform_frame_ip(GstVideoFilter* filter, GstVideoFrame* frame) {
  return autoassign::gst::guarded(GST_ELEMENT(filter), "drawing",
                                  [&] { return draw(GST_AUTO_ASSIGN_OVERLAY(filter), frame); });
}

void overlay_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_OVERLAY(object);
  std::lock_guard<std::mutex> lock(*self->lock);
  auto& s = *self->settings;
  switch (prop_id) {
    case PROP_LINE_WIDTH:
      s.line_width = g_value_get_int(value);
      break;
    case PROP_FONT_SCALE:
      s.font_scale = g_value_get_double(value);
      break;
    case PROP_SHOW_LABELS:
      s.show_labels = g_value_get_boolean(value);
      break;
    case PROP_SHOW_CONFIDENCE:
      s.show_confidence = g_value_get_boolean(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void overlay_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_OVERLAY(object);
  std::lock_guard<std::mutex> lock(*self->lock);
  const auto& s = *self->settings;
  switch (prop_id) {
    case PROP_LINE_WIDTH:
      g_value_set_int(value, s.line_width);
      break;
    case PROP_FONT_SCALE:
      g_value_set_double(value, s.font_scale);
      break;
    case PROP_SHOW_LABELS:
      g_value_set_boolean(value, s.show_labels);
      break;
    case PROP_SHOW_CONFIDENCE:
      g_value_set_boolean(value, s.show_confidence);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void overlay_finalize(GObject* object) {
  auto* self = GST_AUTO_ASSIGN_OVERLAY(object);
  delete self->settings;
  delete self->lock;
  G_OBJECT_CLASS(gst_auto_assign_overlay_parent_class)->finalize(object);
}

}  // namespace

static void gst_auto_assign_overlay_class_init(GstAutoAssignOverlayClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_auto_assign_overlay_debug, "autoassignoverlay", 0,
                          "Draws regions of interest");
  gobject_class->set_property = overlay_set_property;
  gobject_class->get_property = overlay_get_property;
  gobject_class->finalize = overlay_finalize;
  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                           GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(
      gobject_class, PROP_LINE_WIDTH,
      g_param_spec_int("line-width", "Line width", "Box outline width in pixels", 1, 64,
                       DEFAULT_LINE_WIDTH, rw));
  g_object_class_install_property(
      gobject_class, PROP_FONT_SCALE,
      g_param_spec_double("font-scale", "Font scale",
                          "Caption size (OpenCV Hershey font scale; 0.5 is ~10 px high)", 0.1, 10.0,
                          DEFAULT_FONT_SCALE, rw));
  g_object_class_install_property(
      gobject_class, PROP_SHOW_LABELS,
      g_param_spec_boolean("show-labels", "Show labels", "Write each box's label",
                           DEFAULT_SHOW_LABELS, rw));
  g_object_class_install_property(
      gobject_class, PROP_SHOW_CONFIDENCE,
      g_param_spec_boolean("show-confidence", "Show confidence", "Write each box's confidence",
                           DEFAULT_SHOW_CONFIDENCE, rw));
  gst_element_class_set_static_metadata(element_class, "AutoAssign overlay", "Filter/Effect/Video",
                                        "Draws regions of interest with labels and confidences",
                                        "autoassign-gst developers");
  GstCaps* caps = gst_caps_from_string(VIDEO_CAPS);
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, caps));
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, caps));
  gst_caps_unref(caps);
  GST_VIDEO_FILTER_CLASS(klass)->transform_frame_ip = overlay_transform_frame_ip;
}

static void gst_auto_assign_overlay_init(GstAutoAssignOverlay* self) {
  self->lock = new std::mutex();
  self->settings = new OverlaySettings();
}
