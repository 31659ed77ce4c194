/* SPDX-License-Identifier: MIT */
/**
 * SECTION:element-autoassignjson
 *
 * Pass-through element that writes one JSON object per frame (JSON lines) with the frame's
 * #GstVideoRegionOfInterestMeta, in the shape of DL Streamer's gvametaconvert:
 * `{"timestamp": ns, "resolution": {"width", "height"}, "objects": [{"x", "y", "w", "h",
 * "roi_type", "detection": {"bounding_box": {"x_min", "y_min", "x_max", "y_max"},
 * "confidence", "label", "label_id"}}]}`.
 *
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     autoassigndetect model-file=face-rt.pt ! autoassignjson location=faces.jsonl ! fakesink
 * ]|
 */
#include "gstautoassignjson.h"

#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoassign/types.h"
#include "roi.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_json_debug);
#define GST_CAT_DEFAULT gst_auto_assign_json_debug

enum { PROP_0, PROP_LOCATION, PROP_POST_MESSAGES, PROP_APPEND, PROP_SOURCE };
#define DEFAULT_LOCATION "-"
#define DEFAULT_POST_MESSAGES FALSE

struct JsonState {
  std::mutex lock;  // guards everything here
  std::string location = DEFAULT_LOCATION;
  bool post_messages = DEFAULT_POST_MESSAGES;
  bool append = false;
  std::string source;  // written as "source" when set (gvametaconvert's field)
  FILE* out = nullptr;
  bool owns_out = false;
  GstVideoInfo info;
  bool have_info = false;
};

struct _GstAutoAssignJson {
  GstBaseTransform parent;
  JsonState* state;
};

G_DEFINE_TYPE(GstAutoAssignJson, gst_auto_assign_json, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE(autoassignjson, "autoassignjson", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_JSON);

namespace {

gboolean json_start(GstBaseTransform* trans) {
  auto* st = GST_AUTO_ASSIGN_JSON(trans)->state;
  std::lock_guard<std::mutex> lock(st->lock);
  if (st->location.empty()) return TRUE;  // messages only
  if (st->location == "-") {
    st->out = stdout;
    st->owns_out = false;
    return TRUE;
  }
  st->out = std::fopen(st->location.c_str(), st->append ? "a" : "w");
  if (!st->out) {
    GST_ELEMENT_ERROR(trans, RESOURCE, OPEN_WRITE,
                      ("cannot open '%s' for writing: %s", st->location.c_str(), g_strerror(errno)),
                      (nullptr));
    return FALSE;
  }
  st->owns_out = true;
  return TRUE;
}

gboolean json_stop(GstBaseTransform* trans) {
  auto* st = GST_AUTO_ASSIGN_JSON(trans)->state;
  std::lock_guard<std::mutex> lock(st->lock);
  if (st->out && st->owns_out) std::fclose(st->out);
  st->out = nullptr;
  st->have_info = false;
  return TRUE;
}

gboolean json_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps*) {
  auto* st = GST_AUTO_ASSIGN_JSON(trans)->state;
  std::lock_guard<std::mutex> lock(st->lock);
  st->have_info = gst_video_info_from_caps(&st->info, incaps);
  return st->have_info;
}

using autoassign::gst::json_text;

GstFlowReturn json_transform_ip_impl(GstBaseTransform* trans, GstBuffer* buffer);

// No exception may cross into GStreamer's C code: anything thrown (allocation failure, a bug)
// becomes an element error.
GstFlowReturn json_transform_ip(GstBaseTransform* trans, GstBuffer* buffer) {
  try {
    return json_transform_ip_impl(trans, buffer);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(trans, STREAM, FAILED, ("writing JSON failed: %s", e.what()), (nullptr));
  } catch (...) {
    GST_ELEMENT_ERROR(trans, STREAM, FAILED, ("writing JSON failed"), (nullptr));
  }
  return GST_FLOW_ERROR;
}

GstFlowReturn json_transform_ip_impl(GstBaseTransform* trans, GstBuffer* buffer) {
  auto* st = GST_AUTO_ASSIGN_JSON(trans)->state;
  const auto rois = autoassign::gst::read_rois(buffer);
  // Messages are posted after the lock is released: a synchronous bus handler may call back
  // into this element (g_object_get), which takes the same lock.
  std::vector<GstMessage*> messages;
  std::unique_lock<std::mutex> lock(st->lock);
  const int w = st->have_info ? GST_VIDEO_INFO_WIDTH(&st->info) : 0;
  const int h = st->have_info ? GST_VIDEO_INFO_HEIGHT(&st->info) : 0;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  const nlohmann::json frame = autoassign::gst::frame_to_json(buffer, rois, w, h, st->source);
  if (st->post_messages) {
    for (size_t i = 0; i < rois.size(); ++i) {
      const auto& r = rois[i];
      GstStructure* s = gst_structure_new(
          "autoassign-object", "timestamp", G_TYPE_UINT64, static_cast<guint64>(pts), "x",
          G_TYPE_INT, r.x, "y", G_TYPE_INT, r.y, "w", G_TYPE_INT, r.w, "h", G_TYPE_INT, r.h,
          "roi-type", G_TYPE_STRING, r.roi_type.c_str(), "label", G_TYPE_STRING, r.label.c_str(),
          "label-id", G_TYPE_INT, r.label_id, "confidence", G_TYPE_DOUBLE, r.confidence, "json",
          G_TYPE_STRING, json_text(frame["objects"][i]).c_str(), nullptr);
      messages.push_back(gst_message_new_element(GST_OBJECT(trans), s));
    }
  }
  bool write_failed = false;
  std::string location;
  if (st->out) {
    const std::string line = json_text(frame) + "\n";
    if (std::fwrite(line.data(), 1, line.size(), st->out) != line.size() ||
        std::fflush(st->out) != 0) {
      write_failed = true;
      location = st->location;
    }
  }
  const int saved_errno = errno;
  lock.unlock();
  for (GstMessage* m : messages) gst_element_post_message(GST_ELEMENT(trans), m);
  if (write_failed) {
    GST_ELEMENT_ERROR(trans, RESOURCE, WRITE,
                      ("cannot write to '%s': %s", location.c_str(), g_strerror(saved_errno)),
                      (nullptr));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

void json_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* st = GST_AUTO_ASSIGN_JSON(object)->state;
  std::lock_guard<std::mutex> lock(st->lock);
  switch (prop_id) {
    case PROP_LOCATION: {
      const char* v = g_value_get_string(value);
      st->location = v ? v : "";
      break;
    }
    case PROP_POST_MESSAGES:
      st->post_messages = g_value_get_boolean(value);
      break;
    case PROP_APPEND:
      st->append = g_value_get_boolean(value);
      break;
    case PROP_SOURCE: {
      const char* v = g_value_get_string(value);
      st->source = autoassign::sanitize_utf8(v ? v : "");
      break;
    }
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void json_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  auto* st = GST_AUTO_ASSIGN_JSON(object)->state;
  std::lock_guard<std::mutex> lock(st->lock);
  switch (prop_id) {
    case PROP_LOCATION:
      g_value_set_string(value, st->location.c_str());
      break;
    case PROP_POST_MESSAGES:
      g_value_set_boolean(value, st->post_messages);
      break;
    case PROP_APPEND:
      g_value_set_boolean(value, st->append);
      break;
    case PROP_SOURCE:
      g_value_set_string(value, st->source.c_str());
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void json_finalize(GObject* object) {
  delete GST_AUTO_ASSIGN_JSON(object)->state;
  G_OBJECT_CLASS(gst_auto_assign_json_parent_class)->finalize(object);
}

}  // namespace

static void gst_auto_assign_json_class_init(GstAutoAssignJsonClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_auto_assign_json_debug, "autoassignjson", 0, "ROI metadata to JSON");
  gobject_class->set_property = json_set_property;
  gobject_class->get_property = json_get_property;
  gobject_class->finalize = json_finalize;
  g_object_class_install_property(
      gobject_class, PROP_LOCATION,
      g_param_spec_string("location", "Location",
                          "JSON-lines file written one object per frame ('-' = stdout, empty = "
                          "none); applies at the next READY->PAUSED",
                          DEFAULT_LOCATION,
                          static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                   GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      gobject_class, PROP_POST_MESSAGES,
      g_param_spec_boolean("post-messages", "Post messages",
                           "Also post an \"autoassign-object\" element message per object",
                           DEFAULT_POST_MESSAGES,
                           static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                    GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property(
      gobject_class, PROP_APPEND,
      g_param_spec_boolean("append", "Append",
                           "Append to the file instead of truncating it at READY->PAUSED (a "
                           "pipeline restarted after a camera dropped keeps its earlier lines)",
                           FALSE,
                           static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                    GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      gobject_class, PROP_SOURCE,
      g_param_spec_string("source", "Source",
                          "Written as \"source\" in every object when set (e.g. the camera's "
                          "URI), as gvametaconvert does",
                          nullptr,
                          static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                   GST_PARAM_MUTABLE_PLAYING)));
  gst_element_class_set_static_metadata(
      element_class, "AutoAssign JSON writer", "Filter/Analyzer/Video",
      "Writes regions of interest as JSON lines (gvametaconvert shape)",
      "autoassign-gst developers");
  autoassign::gst::add_any_video_pads(element_class);
  trans_class->start = json_start;
  trans_class->stop = json_stop;
  trans_class->set_caps = json_set_caps;
  trans_class->transform_ip = json_transform_ip;
  trans_class->transform_ip_on_passthrough = TRUE;
}

static void gst_auto_assign_json_init(GstAutoAssignJson* self) {
  self->state = new JsonState();
  // Reads metadata only: passthrough, the buffer is never made writable or copied.
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}
