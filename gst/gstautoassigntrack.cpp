/* SPDX-License-Identifier: MIT */
/**
 * SECTION:element-autoassigntrack
 *
 * Multi-object tracking after autoassigndetect (or any producer of
 * #GstVideoRegionOfInterestMeta with a "detection" structure): every ROI leaving the element
 * carries an "object_id" parameter structure with an int "id", as DL Streamer's gvatrack
 * stores it, and autoassignjson writes it as "id". Association is ByteTrack's
 * (autoassign::Tracker: a constant-velocity Kalman filter per object, high-score boxes matched
 * first, then low-score boxes to the tracks still unmatched, greedy on IoU). On frames the
 * detector skipped (inference-interval > 1, or drop-when-busy frames that repeat an old
 * result: autoassigndetect marks them) the tracks' predicted boxes replace the repeated ones,
 * so boxes move with the objects. Boxes the tracker does not keep (low-score boxes that
 * continue no track) are removed. One tracker per element: each stream tracks on its own.
 *
 * |[
 * gst-launch-1.0 rtspsrc location=rtsp://camera/stream ! decodebin ! videoconvert ! \
 *     autoassigndetect model-file=face-rt.pt threshold=0.1 inference-interval=3 ! \
 *     autoassigntrack ! autoassignoverlay ! autovideosink
 * ]|
 * (threshold=0.1 lets the detector pass the low-score boxes ByteTrack's second match uses.)
 */
#include "gstautoassigntrack.h"

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "autoassign/core/tracker.h"
#include "element.h"
#include "inference_mark.h"
#include "roi_meta.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_track_debug);
#define GST_CAT_DEFAULT gst_auto_assign_track_debug

enum { PROP_0, PROP_TRACK_BUFFER, PROP_MATCH_IOU, PROP_HIGH_THRESHOLD, PROP_LOW_THRESHOLD };

namespace {

// Made at start from the settings, dropped at stop (gst-plugins-rs's Settings/State split).
struct State {
  explicit State(const autoassign::TrackerOptions& o) : tracker(o) {}
  autoassign::Tracker tracker;
  autoassign::gst::VideoSize size;
};

}  // namespace

struct GstAutoAssignTrackPrivate {
  std::mutex settings_lock;  // guards settings (properties, any thread)
  autoassign::TrackerOptions settings;
  std::mutex state_lock;  // guards state (the streaming thread, flushes, start/stop)
  std::optional<State> state;
};

struct _GstAutoAssignTrack {
  GstBaseTransform parent;
  GstAutoAssignTrackPrivate* priv;
};

G_DEFINE_TYPE(GstAutoAssignTrack, gst_auto_assign_track, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE(autoassigntrack, "autoassigntrack", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_TRACK);

namespace {

gboolean track_start(GstBaseTransform* trans) {
  auto* priv = GST_AUTO_ASSIGN_TRACK(trans)->priv;
  autoassign::TrackerOptions options;
  {
    std::lock_guard<std::mutex> lock(priv->settings_lock);
    options = priv->settings;
  }
  std::lock_guard<std::mutex> lock(priv->state_lock);
  try {
    priv->state.emplace(options);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(trans, RESOURCE, SETTINGS, ("%s", e.what()), (nullptr));
    return FALSE;
  }
  return TRUE;
}

gboolean track_stop(GstBaseTransform* trans) {
  auto* priv = GST_AUTO_ASSIGN_TRACK(trans)->priv;
  std::lock_guard<std::mutex> lock(priv->state_lock);
  priv->state.reset();
  return TRUE;
}

gboolean track_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps*) {
  auto* priv = GST_AUTO_ASSIGN_TRACK(trans)->priv;
  autoassign::gst::VideoSize size;
  if (!autoassign::gst::video_size_of(incaps, &size)) return FALSE;
  std::lock_guard<std::mutex> lock(priv->state_lock);
  if (priv->state) priv->state->size = size;
  return TRUE;
}

// A flush (seek) starts the scene again: tracks from before it would match nothing real.
gboolean track_sink_event(GstBaseTransform* trans, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    auto* priv = GST_AUTO_ASSIGN_TRACK(trans)->priv;
    std::lock_guard<std::mutex> lock(priv->state_lock);
    if (priv->state) priv->state->tracker.reset();
  }
  return GST_BASE_TRANSFORM_CLASS(gst_auto_assign_track_parent_class)->sink_event(trans, event);
}

// The ROIs as detections in frame pixels: the "detection" structure's normalised box (sub-pixel)
// where present, the meta's integer box otherwise, with confidence 1.
std::vector<autoassign::Detection> detections_of(const std::vector<autoassign::gst::Roi>& rois,
                                                 int w, int h) {
  std::vector<autoassign::Detection> out;
  for (const auto& r : rois) {
    autoassign::Detection d;
    if (r.has_detection && w > 0 && h > 0) {
      d.x1 = static_cast<float>(r.x_min * w);
      d.y1 = static_cast<float>(r.y_min * h);
      d.x2 = static_cast<float>(r.x_max * w);
      d.y2 = static_cast<float>(r.y_max * h);
      d.score = static_cast<float>(r.confidence);
      d.label_id = r.label_id;
      d.label = r.label.empty() ? r.roi_type : r.label;
    } else {
      d.x1 = static_cast<float>(r.x);
      d.y1 = static_cast<float>(r.y);
      d.x2 = static_cast<float>(r.x + r.w);
      d.y2 = static_cast<float>(r.y + r.h);
      d.score = 1.0f;
      d.label = r.roi_type;
    }
    // NaN or inverted boxes from another producer match nothing and start nothing.
    if (!(d.x2 > d.x1 && d.y2 > d.y1 && d.score == d.score)) continue;
    out.push_back(std::move(d));
  }
  return out;
}

GstFlowReturn track_buffer(GstAutoAssignTrack* self, GstBuffer* buffer) {
  std::lock_guard<std::mutex> lock(self->priv->state_lock);
  if (!self->priv->state) return GST_FLOW_OK;
  State& st = *self->priv->state;
  const int w = st.size.width, h = st.size.height;
  const int mark = autoassign::gst::read_inference_mark(buffer);
  std::vector<autoassign::TrackedObject> objects;
  // The boxes' source-pts: on a frame with fresh detections, the frame they were computed on
  // (older than this one with drop-when-busy), so that box age stays measurable downstream;
  // on a frame without, the tracker's prediction is for this frame.
  GstClockTime source_pts = GST_BUFFER_PTS(buffer);
  if (mark == 0) {
    objects = st.tracker.predict();
  } else {
    const auto rois = autoassign::gst::read_rois(buffer);
    for (const auto& r : rois) {
      if (GST_CLOCK_TIME_IS_VALID(r.source_pts)) {
        source_pts = r.source_pts;
        break;
      }
    }
    objects = st.tracker.update(detections_of(rois, w, h));
  }
  autoassign::gst::remove_rois(buffer);
  std::vector<autoassign::Detection> boxes;
  std::vector<int64_t> ids;
  for (auto& o : objects) {
    boxes.push_back(std::move(o.box));
    ids.push_back(o.id);
  }
  autoassign::gst::attach_detections(buffer, boxes, w, h, source_pts, &ids);
  return GST_FLOW_OK;
}

GstFlowReturn track_transform_ip(GstBaseTransform* trans, GstBuffer* buffer) {
  return autoassign::gst::guarded(GST_ELEMENT(trans), "tracking", [&] {
    return track_buffer(GST_AUTO_ASSIGN_TRACK(trans), buffer);
  });
}

void track_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* priv = GST_AUTO_ASSIGN_TRACK(object)->priv;
  std::lock_guard<std::mutex> lock(priv->settings_lock);
  auto& options = priv->settings;
  switch (prop_id) {
    case PROP_TRACK_BUFFER:
      options.track_buffer = g_value_get_int(value);
      break;
    case PROP_MATCH_IOU:
      options.match_iou = g_value_get_double(value);
      break;
    case PROP_HIGH_THRESHOLD:
      options.high_threshold = g_value_get_double(value);
      break;
    case PROP_LOW_THRESHOLD:
      options.low_threshold = g_value_get_double(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void track_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  auto* priv = GST_AUTO_ASSIGN_TRACK(object)->priv;
  std::lock_guard<std::mutex> lock(priv->settings_lock);
  auto& options = priv->settings;
  switch (prop_id) {
    case PROP_TRACK_BUFFER:
      g_value_set_int(value, options.track_buffer);
      break;
    case PROP_MATCH_IOU:
      g_value_set_double(value, options.match_iou);
      break;
    case PROP_HIGH_THRESHOLD:
      g_value_set_double(value, options.high_threshold);
      break;
    case PROP_LOW_THRESHOLD:
      g_value_set_double(value, options.low_threshold);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void track_finalize(GObject* object) {
  delete GST_AUTO_ASSIGN_TRACK(object)->priv;
  G_OBJECT_CLASS(gst_auto_assign_track_parent_class)->finalize(object);
}

}  // namespace

static void gst_auto_assign_track_class_init(GstAutoAssignTrackClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_auto_assign_track_debug, "autoassigntrack", 0,
                          "ByteTrack-style object tracking");
  gobject_class->set_property = track_set_property;
  gobject_class->get_property = track_get_property;
  gobject_class->finalize = track_finalize;
  const autoassign::TrackerOptions defaults;
  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_READY);
  g_object_class_install_property(
      gobject_class, PROP_TRACK_BUFFER,
      g_param_spec_int("track-buffer", "Track buffer",
                       "Frames an object may go undetected (occluded, missed) and keep its id", 0,
                       100000, defaults.track_buffer, flags));
  g_object_class_install_property(
      gobject_class, PROP_MATCH_IOU,
      g_param_spec_double("match-iou", "Match IoU",
                          "Least overlap of a track's predicted box and a high-score box to "
                          "match them (low-score boxes need at least 0.5)",
                          0.01, 1.0, defaults.match_iou, flags));
  g_object_class_install_property(
      gobject_class, PROP_HIGH_THRESHOLD,
      g_param_spec_double("high-threshold", "High threshold",
                          "Boxes at or above this score match first and may start new tracks "
                          "(the detector's default threshold)",
                          0.0, 1.0, defaults.high_threshold, flags));
  g_object_class_install_property(
      gobject_class, PROP_LOW_THRESHOLD,
      g_param_spec_double("low-threshold", "Low threshold",
                          "Boxes in [low, high) only continue tracks (ByteTrack's second match; "
                          "lower the detector's threshold to pass them); below low they go",
                          0.0, 1.0, defaults.low_threshold, flags));
  gst_element_class_set_static_metadata(
      element_class, "AutoAssign object tracker", "Filter/Analyzer/Video",
      "Gives every region of interest a stable object id (ByteTrack association, Kalman "
      "prediction)",
      "autoassign-gst developers");
  autoassign::gst::add_any_video_pads(element_class);
  trans_class->start = track_start;
  trans_class->stop = track_stop;
  trans_class->set_caps = track_set_caps;
  trans_class->sink_event = track_sink_event;
  trans_class->transform_ip = track_transform_ip;
}

static void gst_auto_assign_track_init(GstAutoAssignTrack* self) {
  self->priv = new GstAutoAssignTrackPrivate();
  // Rewrites metadata only: in place, never copying the pixels.
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
}
