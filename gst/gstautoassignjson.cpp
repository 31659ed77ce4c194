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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoassign/core/types.h"
#include "element.h"
#include "frame_json.h"
#include "roi_meta.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_json_debug);
#define GST_CAT_DEFAULT gst_auto_assign_json_debug

enum { PROP_0, PROP_LOCATION, PROP_POST_MESSAGES, PROP_APPEND, PROP_SOURCE };
#define DEFAULT_LOCATION "-"
#define DEFAULT_POST_MESSAGES FALSE

namespace {

// Written by properties (any thread); read at start and per frame, under settings_lock.
struct Settings {
  std::string location = DEFAULT_LOCATION;
  bool post_messages = DEFAULT_POST_MESSAGES;
  bool append = false;
  std::string source;  // written as "source" when set (gvametaconvert's field)
};

// Made at start, dropped at stop (gst-plugins-rs's Settings/State split): the open output and
// the frame size of the current caps, under state_lock.
struct State {
  std::string location;       // as it was at start
  std::shared_ptr<FILE> out;  // closed with the state (stdout is not); null: messages only
  autoassign::gst::VideoSize size;
};

}  // namespace

struct GstAutoAssignJsonPrivate {
  std::mutex settings_lock;
  Settings settings;
  std::mutex state_lock;
  std::optional<State> state;
};

struct _GstAutoAssignJson {
  GstBaseTransform parent;
  GstAutoAssignJsonPrivate* priv;
};

G_DEFINE_TYPE(GstAutoAssignJson, gst_auto_assign_json, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE(autoassignjson, "autoassignjson", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_JSON);

namespace {

Settings settings_of(GstAutoAssignJson* self) {
  std::lock_guard<std::mutex> lock(self->priv->settings_lock);
  return self->priv->settings;
}

gboolean json_start(GstBaseTransform* trans) {
  auto* self = GST_AUTO_ASSIGN_JSON(trans);
  const Settings s = settings_of(self);
  State st;
  st.location = s.location;
  if (s.location == "-") {
    st.out = std::shared_ptr<FILE>(stdout, [](FILE*) {});
  } else if (!s.location.empty()) {  // empty: messages only
    std::string error;
    FILE* f = autoassign::gst::open_output(s.location, s.append, &error);
    if (!f) {
      GST_ELEMENT_ERROR(trans, RESOURCE, OPEN_WRITE,
                        ("cannot open '%s' for writing: %s", s.location.c_str(), error.c_str()),
                        (nullptr));
      return FALSE;
    }
    st.out = std::shared_ptr<FILE>(f, [](FILE* file) { std::fclose(file); });
  }
  std::lock_guard<std::mutex> lock(self->priv->state_lock);
  self->priv->state.emplace(std::move(st));
  return TRUE;
}

gboolean json_stop(GstBaseTransform* trans) {
  auto* self = GST_AUTO_ASSIGN_JSON(trans);
  std::lock_guard<std::mutex> lock(self->priv->state_lock);
  self->priv->state.reset();  // closes the file
  return TRUE;
}

gboolean json_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps*) {
  auto* self = GST_AUTO_ASSIGN_JSON(trans);
  autoassign::gst::VideoSize size;
  if (!autoassign::gst::video_size_of(incaps, &size)) return FALSE;
  std::lock_guard<std::mutex> lock(self->priv->state_lock);
  if (self->priv->state) self->priv->state->size = size;
  return TRUE;
}

using autoassign::gst::json_text;

GstFlowReturn json_write(GstAutoAssignJson* self, GstBuffer* buffer) {
  const auto rois = autoassign::gst::read_rois(buffer);
  const Settings s = settings_of(self);
  // Messages are posted after the lock is released: a synchronous bus handler may call back
  // into this element (g_object_get), which takes the settings lock.
  std::vector<GstMessage*> messages;
  std::unique_lock<std::mutex> lock(self->priv->state_lock);
  if (!self->priv->state) return GST_FLOW_FLUSHING;
  State& st = *self->priv->state;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  const nlohmann::json frame =
      autoassign::gst::frame_to_json(buffer, rois, st.size.width, st.size.height, s.source);
  if (s.post_messages) {
    for (size_t i = 0; i < rois.size(); ++i) {
      const auto& r = rois[i];
      GstStructure* m = gst_structure_new(
          "autoassign-object", "timestamp", G_TYPE_UINT64, static_cast<guint64>(pts), "x",
          G_TYPE_INT, r.x, "y", G_TYPE_INT, r.y, "w", G_TYPE_INT, r.w, "h", G_TYPE_INT, r.h,
          "roi-type", G_TYPE_STRING, r.roi_type.c_str(), "label", G_TYPE_STRING, r.label.c_str(),
          "label-id", G_TYPE_INT, r.label_id, "confidence", G_TYPE_DOUBLE, r.confidence, "json",
          G_TYPE_STRING, json_text(frame["objects"][i]).c_str(), nullptr);
      messages.push_back(gst_message_new_element(GST_OBJECT(self), m));
    }
  }
  bool write_failed = false;
  if (st.out) {
    const std::string line = json_text(frame) + "\n";
    write_failed = std::fwrite(line.data(), 1, line.size(), st.out.get()) != line.size() ||
                   std::fflush(st.out.get()) != 0;
  }
  const int saved_errno = errno;
  const std::string location = st.location;
  lock.unlock();
  for (GstMessage* m : messages) gst_element_post_message(GST_ELEMENT(self), m);
  if (write_failed) {
    GST_ELEMENT_ERROR(self, RESOURCE, WRITE,
                      ("cannot write to '%s': %s", location.c_str(), g_strerror(saved_errno)),
                      (nullptr));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

GstFlowReturn json_transform_ip(GstBaseTransform* trans, GstBuffer* buffer) {
  return autoassign::gst::guarded(GST_ELEMENT(trans), "writing JSON",
                                  [&] { return json_write(GST_AUTO_ASSIGN_JSON(trans), buffer); });
}

void json_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* priv = GST_AUTO_ASSIGN_JSON(object)->priv;
  std::lock_guard<std::mutex> lock(priv->settings_lock);
  Settings* st = &priv->settings;
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
  auto* priv = GST_AUTO_ASSIGN_JSON(object)->priv;
  std::lock_guard<std::mutex> lock(priv->settings_lock);
  const Settings* st = &priv->settings;
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
  delete GST_AUTO_ASSIGN_JSON(object)->priv;
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
  self->priv = new GstAutoAssignJsonPrivate();
  // Reads metadata only: passthrough, the buffer is never made writable or copied.
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}
