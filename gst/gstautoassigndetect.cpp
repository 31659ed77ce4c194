/* SPDX-License-Identifier: MIT */
/**
 * SECTION:element-autoassigndetect
 *
 * Runs an AutoAssign model (a `.pt` file from `autoassign train` or the model zoo) on video
 * frames and attaches a #GstVideoRegionOfInterestMeta per detected object: `roi_type` is the
 * label, and a "detection" parameter structure carries the normalised box (x_min, y_min,
 * x_max, y_max), confidence, label_id and label, as DL Streamer's gvadetect does. Pixels are
 * never modified.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     autoassigndetect model-file=model/zoo/face-rt.pt threshold=0.5 ! \
 *     autoassignoverlay ! videoconvert ! autovideosink
 * gst-launch-1.0 v4l2src ! videoconvert ! \
 *     autoassigndetect model-file=face-rt.pt drop-when-busy=true ! autoassignjson location=- !
 * fakesink
 * ]|
 */
#include "gstautoassigndetect.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "autoassign/core/default_model.h"
#include "autoassign/core/files.h"
#include "autoassign/core/scheduler.h"
#include "autoassign/core/shared_cache.h"
#include "autoassign/infer/detector.h"
#include "element.h"
#include "inference_mark.h"
#include "model_pool.h"
#include "roi_meta.h"
#include "video_frame.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_detect_debug);
#define GST_CAT_DEFAULT gst_auto_assign_detect_debug

using autoassign::Detection;
using autoassign::Detector;
using autoassign::DetectorOptions;

enum {
  PROP_0,
  PROP_MODEL_FILE,
  PROP_DEVICE,
  PROP_THRESHOLD,
  PROP_IOU_THRESHOLD,
  PROP_MAX_DETECTIONS,
  PROP_INFERENCE_INTERVAL,
  PROP_REPEAT_METADATA,
  PROP_THREADS,
  PROP_LABELS_FILE,
  PROP_DROP_WHEN_BUSY,
  PROP_INPUT_SIZE,
  PROP_PRECISION,
  PROP_KEEP_MODELS,
  PROP_LOADED_MODELS,
};

#define DEFAULT_DEVICE "cpu"
#define DEFAULT_THRESHOLD 0.5
#define DEFAULT_IOU_THRESHOLD 0.6
#define DEFAULT_MAX_DETECTIONS 100
#define DEFAULT_INFERENCE_INTERVAL 1
#define DEFAULT_REPEAT_METADATA FALSE
#define DEFAULT_THREADS 0
#define DEFAULT_DROP_WHEN_BUSY FALSE
#define DEFAULT_PRECISION "auto"

#define VIDEO_FORMATS "{ RGB, BGR, RGBx, BGRx, RGBA, BGRA, NV12, I420 }"
#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE(VIDEO_FORMATS)
#define CUDA_VIDEO_CAPS GST_VIDEO_CAPS_MAKE_WITH_FEATURES("memory:CUDAMemory", VIDEO_FORMATS)

namespace {

// Written by properties (any thread), read when the state is built and per frame.
struct Settings {
  std::string model_file;
  std::string device = DEFAULT_DEVICE;
  double threshold = DEFAULT_THRESHOLD;
  double iou_threshold = DEFAULT_IOU_THRESHOLD;
  int max_detections = DEFAULT_MAX_DETECTIONS;
  guint inference_interval = DEFAULT_INFERENCE_INTERVAL;
  bool repeat_metadata = DEFAULT_REPEAT_METADATA;
  int threads = DEFAULT_THREADS;
  std::string labels_file;
  std::string input_size;  // "WxH" or "" (the model's)
  bool drop_when_busy = DEFAULT_DROP_WHEN_BUSY;
  std::string precision = DEFAULT_PRECISION;
};

}  // namespace

struct GstAutoAssignDetectPrivate {
  std::mutex settings_lock;  // guards settings
  Settings settings;

  // Built in start(), dropped in stop(). The detector is swapped whole on a model reload, so
  // a frame in flight keeps the one it started with.
  std::mutex detector_lock;  // guards detector
  std::shared_ptr<Detector> detector;

  // Which frames are inferred on and which boxes each carries (autoassign/scheduler.h):
  // built in start() with drop-when-busy as it was then (the worker exists only if it was set
  // then, so the streaming path and the LATENCY answer do not follow a later change of the
  // property), stopped in stop(). Guarded by detector_lock; users hold their own reference.
  std::shared_ptr<autoassign::InferenceScheduler> scheduler;

  std::mutex loader_lock;  // guards loader: property sets and stop() may race
  std::thread loader;      // background model reload
};

struct _GstAutoAssignDetect {
  GstVideoFilter parent;
  GstAutoAssignDetectPrivate* priv;
};

G_DEFINE_TYPE(GstAutoAssignDetect, gst_auto_assign_detect, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE(autoassigndetect, "autoassigndetect", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_DETECT);

namespace {

Settings settings_of(GstAutoAssignDetect* self) {
  std::lock_guard<std::mutex> lock(self->priv->settings_lock);
  return self->priv->settings;
}

// What the shared model depends on, from the settings.
autoassign::gst::ModelSpec spec_of(const Settings& s) {
  autoassign::gst::ModelSpec m;
  m.model_file = s.model_file;
  m.device = s.device;
  m.threads = s.threads;
  m.labels_file = s.labels_file;
  m.input_size = s.input_size;
  m.precision = s.precision;
  return m;
}

void post_warnings(GstAutoAssignDetect* self, const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) {
    GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS, ("%s", w.c_str()), (nullptr));
  }
}

std::shared_ptr<Detector> current_detector(GstAutoAssignDetect* self) {
  std::lock_guard<std::mutex> lock(self->priv->detector_lock);
  return self->priv->detector;
}

std::shared_ptr<autoassign::InferenceScheduler> scheduler_of(GstAutoAssignDetect* self) {
  std::lock_guard<std::mutex> lock(self->priv->detector_lock);
  return self->priv->scheduler;
}

// Runs the detector on a frame with the thresholds of the moment: boxes in the frame's pixels
// with its size, the time the model took in `ms` (it travels on the buffer's inference mark).
autoassign::InferenceResult run_detector(GstAutoAssignDetect* self, const GstVideoInfo* info,
                                         GstBuffer* buffer) {
  auto det = current_detector(self);
  if (!det) throw std::runtime_error("no model loaded");
  const Settings s = settings_of(self);
  autoassign::DetectParams params;
  params.threshold = static_cast<float>(s.threshold);
  params.iou_threshold = static_cast<float>(s.iou_threshold);
  params.max_detections = s.max_detections;
  autoassign::gst::MappedFrame frame(info, buffer);
  autoassign::InferenceResult r;
  const auto t0 = std::chrono::steady_clock::now();
  r.detections = det->detect(frame.view(), params);
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.pts = GST_BUFFER_PTS_IS_VALID(buffer) ? static_cast<int64_t>(GST_BUFFER_PTS(buffer)) : -1;
  // Boxes stay in this frame's pixels, with its size, until they are attached.
  r.width = frame.width();
  r.height = frame.height();
  return r;
}

// Attaches what the scheduler says this frame carries and the inference mark. The boxes are in
// the pixels of the frame they were found on; only a result from a frame of another size
// (drop-when-busy across a caps change) is scaled to this one.
void attach(GstBuffer* buffer, const autoassign::FrameBoxes& boxes, int w, int h) {
  if (boxes.has_result) {
    const auto& r = boxes.result;
    std::vector<Detection> px = r.detections;
    if ((r.width != w || r.height != h) && r.width > 0 && r.height > 0) {
      const float sx = static_cast<float>(w) / static_cast<float>(r.width);
      const float sy = static_cast<float>(h) / static_cast<float>(r.height);
      for (auto& d : px) {
        d.x1 *= sx;
        d.x2 *= sx;
        d.y1 *= sy;
        d.y2 *= sy;
      }
    }
    const GstClockTime pts = r.pts < 0 ? GST_CLOCK_TIME_NONE : static_cast<GstClockTime>(r.pts);
    autoassign::gst::attach_detections(buffer, px, w, h, pts);
  }
  autoassign::gst::mark_inference(buffer, boxes.fresh, boxes.fresh ? boxes.result.ms : 0);
}

void stop_scheduler(GstAutoAssignDetect* self) {
  std::shared_ptr<autoassign::InferenceScheduler> scheduler;
  {
    std::lock_guard<std::mutex> lock(self->priv->detector_lock);
    scheduler = std::move(self->priv->scheduler);
  }
  if (scheduler) scheduler->stop();  // joins the worker outside the lock it takes per job
}

// The loader thread posts bus messages; a synchronous bus handler on that thread may set
// model-file or stop the pipeline, which waits for the loader: joining a thread from itself
// throws (resource_deadlock_would_occur) into GObject's C code. There the loader is detached
// instead: it is already on its way out, and it holds its own reference to the element.
void finish_loader(std::thread& loader) {
  if (!loader.joinable()) return;
  if (loader.get_id() == std::this_thread::get_id()) {
    loader.detach();
  } else {
    loader.join();
  }
}

void join_loader(GstAutoAssignDetect* self) {
  std::lock_guard<std::mutex> lock(self->priv->loader_lock);
  finish_loader(self->priv->loader);
}

// model-file set while running: load in the background, swap when ready.
void reload_model(GstAutoAssignDetect* self, Settings s) {
  try {
    std::vector<std::string> warnings;
    auto det = autoassign::gst::acquire_model(spec_of(s), &warnings, /*fresh=*/true);
    post_warnings(self, warnings);
    {
      std::lock_guard<std::mutex> lock(self->priv->detector_lock);
      if (!self->priv->detector) return;  // stopped meanwhile
      self->priv->detector = det;
    }
    gst_element_post_message(
        GST_ELEMENT(self),
        gst_message_new_element(
            GST_OBJECT(self),
            gst_structure_new("autoassign-model-loaded", "model-file", G_TYPE_STRING,
                              autoassign::sanitize_utf8(s.model_file).c_str(), nullptr)));
  } catch (const std::exception& e) {
    // An error on the bus, of the same kind as a failed start (the application decides
    // whether to stop); until then the running model keeps serving frames.
    autoassign::gst::post_model_error(GST_ELEMENT(self), e);
  }
}

gboolean detect_start(GstBaseTransform* trans) {
  auto* self = GST_AUTO_ASSIGN_DETECT(trans);
  const Settings s = settings_of(self);
  if (const auto def = autoassign::default_model();
      s.model_file == def.path && !autoassign::regular_file_problem(def.path).empty()) {
    GST_ELEMENT_ERROR(
        self, RESOURCE, NOT_FOUND,
        ("no model-file set, and the default model %s (%s) is missing: %s", def.path.c_str(),
         def.origin.c_str(), autoassign::regular_file_problem(def.path).c_str()),
        (nullptr));
    return FALSE;
  }
  try {
    std::vector<std::string> warnings;
    auto det = autoassign::gst::acquire_model(spec_of(s), &warnings);
    post_warnings(self, warnings);
    GST_INFO_OBJECT(self, "model %s on %s: precision %s (asked %s), layout %s",
                    det->info().name.c_str(), det->device().c_str(), det->precision().c_str(),
                    s.precision.c_str(), det->layout().c_str());
    std::lock_guard<std::mutex> lock(self->priv->detector_lock);
    self->priv->detector = det;
  } catch (const std::exception& e) {
    autoassign::gst::post_model_error(GST_ELEMENT(self), e);
    return FALSE;
  }
  autoassign::InferenceScheduler::Options options;
  options.drop_when_busy = s.drop_when_busy;
  auto scheduler = std::make_shared<autoassign::InferenceScheduler>(options);
  {
    // Published before the warm-up below, so buffers arriving meanwhile are inferred on.
    std::lock_guard<std::mutex> lock(self->priv->detector_lock);
    self->priv->scheduler = scheduler;
  }
  if (!s.drop_when_busy) {
    // One inference now, so a live pipeline's LATENCY query (asked before the first frame)
    // gets a real figure; the first run's one-off allocations make it an overestimate, the
    // safe side. Its detections are thrown away.
    try {
      std::vector<uint8_t> blank(640 * 384 * 3, 0);
      auto det = current_detector(self);
      const auto t0 = std::chrono::steady_clock::now();
      det->detect(
          autoassign::ImageView::packed(autoassign::PixelFormat::kRGB, blank.data(), 640, 384));
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      scheduler->set_inference_ms(ms);
    } catch (const std::exception& e) {
      autoassign::gst::post_model_error(GST_ELEMENT(self), e);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean detect_stop(GstBaseTransform* trans) {
  auto* self = GST_AUTO_ASSIGN_DETECT(trans);
  stop_scheduler(self);
  join_loader(self);
  std::lock_guard<std::mutex> lock(self->priv->detector_lock);
  self->priv->detector.reset();
  return TRUE;
}

// A flush (a seek, or a live source restarting) ends the old stream: boxes from before it must
// not be repeated onto frames after it, and a frame still waiting for the drop-when-busy worker
// belongs to the old stream too. The frame counter restarts so inference-interval counts anew.
gboolean detect_sink_event(GstBaseTransform* trans, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    if (auto scheduler = scheduler_of(GST_AUTO_ASSIGN_DETECT(trans))) scheduler->flush();
  }
  return GST_BASE_TRANSFORM_CLASS(gst_auto_assign_detect_parent_class)->sink_event(trans, event);
}

GstFlowReturn detect_buffer(GstAutoAssignDetect* self, GstBuffer* buffer) {
  GstVideoInfo* info = &GST_VIDEO_FILTER(self)->in_info;
  const int w = GST_VIDEO_INFO_WIDTH(info), h = GST_VIDEO_INFO_HEIGHT(info);
  auto scheduler = scheduler_of(self);
  if (!scheduler) {
    // The sink pad stops flushing before start() is called, and start() loads the model: a
    // buffer can arrive in between. It goes on without boxes (a failed load fails the state
    // change itself).
    GST_DEBUG_OBJECT(self, "model not loaded yet: frame passed on without inference");
    autoassign::gst::mark_inference(buffer, false);
    return GST_FLOW_OK;
  }
  if (scheduler->options().drop_when_busy) {
    const std::string error = scheduler->error();
    if (!error.empty()) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("%s", error.c_str()), (nullptr));
      return GST_FLOW_ERROR;
    }
    // Attach the latest finished detections without waiting (while the buffer is still
    // writable), then hand this newest frame to the worker, replacing one it has not started.
    attach(buffer, scheduler->latest(), w, h);
    // A buffer sharing the frame's memory (and its video meta, for the strides), so the one
    // flowing on stays writable. The job owns it: a replaced job releases it unrun. Its PTS
    // goes with it: the boxes' source-pts, which says how old they are when they arrive.
    std::shared_ptr<GstBuffer> frame(
        gst_buffer_copy_region(
            buffer,
            static_cast<GstBufferCopyFlags>(GST_BUFFER_COPY_MEMORY | GST_BUFFER_COPY_META |
                                            GST_BUFFER_COPY_TIMESTAMPS),
            0, static_cast<gsize>(-1)),
        gst_buffer_unref);
    const GstVideoInfo frame_info = *info;
    // The worker is joined in stop() before the element can go away, so `self` outlives it.
    scheduler->submit([self, frame, frame_info] {
      auto r = run_detector(self, &frame_info, frame.get());
      return r;
    });
    return GST_FLOW_OK;
  }
  const Settings s = settings_of(self);
  if (!scheduler->next_frame_infers(s.inference_interval)) {
    attach(buffer, scheduler->repeated(s.repeat_metadata), w, h);
    return GST_FLOW_OK;
  }
  // Mapped for reading only: adding metadata needs a writable GstBuffer, not writable memory.
  autoassign::InferenceResult result;
  try {
    result = run_detector(self, info, buffer);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("inference failed: %s", e.what()), (nullptr));
    return GST_FLOW_ERROR;
  } catch (...) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("inference failed: unknown exception"), (nullptr));
    return GST_FLOW_ERROR;
  }
  attach(buffer, scheduler->record(std::move(result)), w, h);
  if (scheduler->latency_report_due()) {
    // Far from what the pipeline was told: have it ask again.
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  }
  return GST_FLOW_OK;
}

GstFlowReturn detect_transform_ip(GstBaseTransform* trans, GstBuffer* buffer) {
  return autoassign::gst::guarded(GST_ELEMENT(trans), "inference", [&] {
    return detect_buffer(GST_AUTO_ASSIGN_DETECT(trans), buffer);
  });
}

gboolean detect_query(GstBaseTransform* trans, GstPadDirection direction, GstQuery* query) {
  auto* self = GST_AUTO_ASSIGN_DETECT(trans);
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY && direction == GST_PAD_SRC) {
    if (!GST_BASE_TRANSFORM_CLASS(gst_auto_assign_detect_parent_class)
             ->query(trans, direction, query)) {
      return FALSE;
    }
    gboolean live;
    GstClockTime min, max;
    gst_query_parse_latency(query, &live, &min, &max);
    // Synchronous inference holds each frame for about one inference; with drop-when-busy
    // frames pass at once and only the metadata lags.
    auto scheduler = scheduler_of(self);
    const double ms = scheduler ? scheduler->report_latency_ms() : 0;
    const GstClockTime ours = !scheduler || scheduler->options().drop_when_busy
                                  ? 0
                                  : static_cast<GstClockTime>(ms * GST_MSECOND);
    gst_query_set_latency(query, live, min + ours, max == GST_CLOCK_TIME_NONE ? max : max + ours);
    return TRUE;
  }
  return GST_BASE_TRANSFORM_CLASS(gst_auto_assign_detect_parent_class)
      ->query(trans, direction, query);
}

gboolean detect_set_info(GstVideoFilter*, GstCaps*, GstVideoInfo*, GstCaps*, GstVideoInfo*) {
  // A new resolution or format needs nothing: the Detector takes any frame size.
  return TRUE;
}

void detect_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_DETECT(object);
  auto* p = self->priv;
  std::unique_lock<std::mutex> lock(p->settings_lock);
  Settings& s = p->settings;
  switch (prop_id) {
    case PROP_MODEL_FILE: {
      // NULL or "": back to the default model.
      const char* v = g_value_get_string(value);
      s.model_file = v && *v ? v : autoassign::default_model().path;
      const Settings copy = s;
      lock.unlock();
      if (current_detector(self)) {
        // One reload at a time: a second set waits for the first load to finish.
        std::lock_guard<std::mutex> loader_lock(p->loader_lock);
        finish_loader(p->loader);
        gst_object_ref(self);  // the loader's own reference, released when it ends
        p->loader = std::thread([self, copy] {
          reload_model(self, copy);
          gst_object_unref(self);
        });
      }
      return;
    }
    case PROP_DEVICE: {
      const char* v = g_value_get_string(value);
      s.device = v ? v : DEFAULT_DEVICE;
      break;
    }
    // GLib's range check lets NaN through (every comparison with it is false): refuse it as
    // GLib refuses an out-of-range value, with a warning, keeping the current value.
    case PROP_THRESHOLD:
    case PROP_IOU_THRESHOLD: {
      const double v = g_value_get_double(value);
      if (std::isnan(v)) {
        g_warning("autoassigndetect: %s cannot be NaN; keeping %g", pspec->name,
                  prop_id == PROP_THRESHOLD ? s.threshold : s.iou_threshold);
        break;
      }
      (prop_id == PROP_THRESHOLD ? s.threshold : s.iou_threshold) = v;
      break;
    }
    case PROP_MAX_DETECTIONS:
      s.max_detections = g_value_get_int(value);
      break;
    case PROP_INFERENCE_INTERVAL:
      s.inference_interval = g_value_get_uint(value);
      break;
    case PROP_REPEAT_METADATA:
      s.repeat_metadata = g_value_get_boolean(value);
      break;
    case PROP_THREADS:
      s.threads = g_value_get_int(value);
      break;
    case PROP_LABELS_FILE: {
      const char* v = g_value_get_string(value);
      s.labels_file = v ? v : "";
      break;
    }
    case PROP_DROP_WHEN_BUSY:
      s.drop_when_busy = g_value_get_boolean(value);
      break;
    case PROP_INPUT_SIZE: {
      const char* v = g_value_get_string(value);
      s.input_size = v ? v : "";
      break;
    }
    case PROP_PRECISION: {
      const char* v = g_value_get_string(value);
      s.precision = v ? v : DEFAULT_PRECISION;
      break;
    }
    case PROP_KEEP_MODELS:
      // Process-wide (the pool is): not a setting of this element.
      autoassign::gst::keep_models(g_value_get_boolean(value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void detect_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_DETECT(object);
  const Settings s = settings_of(self);
  switch (prop_id) {
    case PROP_MODEL_FILE:
      g_value_set_string(value, s.model_file.c_str());
      break;
    case PROP_DEVICE:
      g_value_set_string(value, s.device.c_str());
      break;
    case PROP_THRESHOLD:
      g_value_set_double(value, s.threshold);
      break;
    case PROP_IOU_THRESHOLD:
      g_value_set_double(value, s.iou_threshold);
      break;
    case PROP_MAX_DETECTIONS:
      g_value_set_int(value, s.max_detections);
      break;
    case PROP_INFERENCE_INTERVAL:
      g_value_set_uint(value, s.inference_interval);
      break;
    case PROP_REPEAT_METADATA:
      g_value_set_boolean(value, s.repeat_metadata);
      break;
    case PROP_THREADS:
      g_value_set_int(value, s.threads);
      break;
    case PROP_LABELS_FILE:
      g_value_set_string(value, s.labels_file.c_str());
      break;
    case PROP_DROP_WHEN_BUSY:
      g_value_set_boolean(value, s.drop_when_busy);
      break;
    case PROP_INPUT_SIZE:
      g_value_set_string(value, s.input_size.c_str());
      break;
    case PROP_PRECISION:
      g_value_set_string(value, s.precision.c_str());
      break;
    case PROP_KEEP_MODELS:
      g_value_set_boolean(value, autoassign::gst::keeping_models());
      break;
    case PROP_LOADED_MODELS:
      g_value_set_uint(value, static_cast<guint>(autoassign::gst::loaded_models()));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void detect_finalize(GObject* object) {
  auto* self = GST_AUTO_ASSIGN_DETECT(object);
  stop_scheduler(self);
  join_loader(self);
  delete self->priv;
  G_OBJECT_CLASS(gst_auto_assign_detect_parent_class)->finalize(object);
}

}  // namespace

static void gst_auto_assign_detect_class_init(GstAutoAssignDetectClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  auto* filter_class = GST_VIDEO_FILTER_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_auto_assign_detect_debug, "autoassigndetect", 0,
                          "AutoAssign object detection");
  gobject_class->set_property = detect_set_property;
  gobject_class->get_property = detect_get_property;
  gobject_class->finalize = detect_finalize;
  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const auto rw_playing = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING);
  const auto rw_ready = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_READY);
  // The default is resolved once, when the plugin loads; the blurb says where it came from.
  static const autoassign::DefaultModel default_model = autoassign::default_model();
  static const std::string model_blurb =
      "Path of the AutoAssign model file (.pt). Set in PLAYING, the new model loads in the "
      "background and replaces the running one atomically; an \"autoassign-model-loaded\" "
      "element message follows. Default: the shipped face model, " +
      default_model.path + " (" + default_model.origin +
      "; the environment variable AUTOASSIGN_MODEL_FILE overrides it); NULL or \"\" restores it";
  g_object_class_install_property(
      gobject_class, PROP_MODEL_FILE,
      g_param_spec_string("model-file", "Model file", model_blurb.c_str(),
                          default_model.path.c_str(), rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device",
                          "Inference device: cpu, cuda or cuda:N (CUDA needs a CUDA LibTorch); "
                          "applies at the next READY->PAUSED",
                          DEFAULT_DEVICE, rw_ready));
  g_object_class_install_property(
      gobject_class, PROP_THRESHOLD,
      g_param_spec_double("threshold", "Threshold",
                          "Minimum confidence (cls x objectness) of a detection, 0..1; applies "
                          "from the next frame",
                          0.0, 1.0, DEFAULT_THRESHOLD, rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_IOU_THRESHOLD,
      g_param_spec_double("iou-threshold", "IoU threshold",
                          "Class-aware NMS overlap above which the weaker box is dropped, "
                          "0..1; applies from the next frame",
                          0.01, 1.0, DEFAULT_IOU_THRESHOLD, rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_MAX_DETECTIONS,
      g_param_spec_int("max-detections", "Max detections",
                       "Most detections attached per frame; applies from the next frame", 1, 10000,
                       DEFAULT_MAX_DETECTIONS, rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_INFERENCE_INTERVAL,
      g_param_spec_uint("inference-interval", "Inference interval",
                        "Run the model on every Nth frame (1 = every frame); other frames pass "
                        "without new detections",
                        1, G_MAXUINT, DEFAULT_INFERENCE_INTERVAL, rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_REPEAT_METADATA,
      g_param_spec_boolean("repeat-metadata", "Repeat metadata",
                           "Attach the last detections to frames skipped by inference-interval, "
                           "so boxes do not flicker",
                           DEFAULT_REPEAT_METADATA, rw_playing));
  g_object_class_install_property(
      gobject_class, PROP_THREADS,
      g_param_spec_int("threads", "Threads",
                       "LibTorch intra-op threads, process-wide (0 = one per core); applies at "
                       "the next READY->PAUSED",
                       0, 256, DEFAULT_THREADS, rw_ready));
  g_object_class_install_property(
      gobject_class, PROP_LABELS_FILE,
      g_param_spec_string("labels-file", "Labels file",
                          "Text file with one label per line, replacing the model's label names "
                          "(must have as many lines as the model has classes; a regular file of at "
                          "most 16 MB); applies at the next READY->PAUSED",
                          nullptr, rw_ready));
  g_object_class_install_property(
      gobject_class, PROP_DROP_WHEN_BUSY,
      g_param_spec_boolean("drop-when-busy", "Drop when busy",
                           "Live mode: infer on a worker thread on the newest frame only, while "
                           "frames pass at once carrying the latest finished detections (so "
                           "inference-interval and repeat-metadata do not apply: the model runs "
                           "as often as it can, and every frame repeats the latest result); "
                           "applies at the next READY->PAUSED",
                           DEFAULT_DROP_WHEN_BUSY, rw_ready));

  g_object_class_install_property(
      gobject_class, PROP_INPUT_SIZE,
      g_param_spec_string("input-size", "Input size",
                          "Network input WxH instead of the model's (e.g. 960x576; multiples of "
                          "32): larger finds smaller objects at a cost growing with the area; "
                          "applies at the next READY->PAUSED",
                          nullptr, rw_ready));
  g_object_class_install_property(
      gobject_class, PROP_PRECISION,
      g_param_spec_string("precision", "Precision",
                          "Network arithmetic: auto (bf16 on CPUs with AMX or AVX512-BF16, fp32 "
                          "elsewhere; the debug log says which), fp32, bf16 or fp16 (CUDA). "
                          "Box decoding, scores and NMS stay fp32; applies at the next "
                          "READY->PAUSED",
                          DEFAULT_PRECISION, rw_ready));
  g_object_class_install_property(
      gobject_class, PROP_KEEP_MODELS,
      g_param_spec_boolean(
          "keep-models", "Keep models",
          "Process-wide: keep every model the process's autoassigndetect elements load (and "
          "those loaded now) after its last element stops, until set FALSE again. A service "
          "that restarts pipelines (a camera reconnecting, cameras added and removed) then reads "
          "each model file once, and its memory does not grow and shrink with every restart",
          FALSE, rw));
  g_object_class_install_property(
      gobject_class, PROP_LOADED_MODELS,
      g_param_spec_uint("loaded-models", "Loaded models",
                        "Process-wide: models loaded now, shared by the elements whose "
                        "model-file, device, threads, labels-file, input-size and precision are "
                        "the same (in use or kept)",
                        0, G_MAXUINT, 0,
                        static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  gst_element_class_set_static_metadata(
      element_class, "AutoAssign object detector", "Filter/Analyzer/Video",
      "Detects objects with an AutoAssign model and attaches GstVideoRegionOfInterestMeta",
      "autoassign-gst developers");
  GstCaps* caps = gst_caps_from_string(VIDEO_CAPS);
#ifdef AUTOASSIGN_WITH_CUDA
  // CUDA frames only where this LibTorch can run on them: otherwise the caps are not offered.
  if (autoassign::cuda_available()) gst_caps_append(caps, gst_caps_from_string(CUDA_VIDEO_CAPS));
#endif
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, caps));
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, caps));
  gst_caps_unref(caps);

  trans_class->start = detect_start;
  trans_class->stop = detect_stop;
  trans_class->query = detect_query;
  trans_class->sink_event = detect_sink_event;
  // Our own transform_ip (not GstVideoFilter's) so the frame is mapped read-only: the buffer
  // is made writable for metadata without copying any pixel memory.
  trans_class->transform_ip = detect_transform_ip;
  trans_class->transform_ip_on_passthrough = FALSE;
  filter_class->set_info = detect_set_info;
}

static void gst_auto_assign_detect_init(GstAutoAssignDetect* self) {
  self->priv = new GstAutoAssignDetectPrivate();
  self->priv->settings.model_file = autoassign::default_model().path;
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
}
