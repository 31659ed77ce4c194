/* SPDX-License-Identifier: MIT */
// autoassign-cameras: several cameras (RTSP URLs, V4L2 devices, files or a test pattern) in one
// process, each through `autoassigndetect ! autoassignjson`, all sharing one loaded model.
//
//   autoassign-cameras --model model/zoo/face-rt.pt --output out/ rtsp://10.0.0.5/stream1
//       rtsp://10.0.0.6/stream1
//   -> out/camera-0.jsonl, out/camera-1.jsonl (DL Streamer gvametaconvert JSON, one per frame)
//
// Reconnection: the program, not rtspsrc, restarts a camera. rtspsrc retries only while it
// connects; once a camera drops mid-stream it posts an error, or (over TCP, when the server
// simply goes away) stops delivering without one. Each camera therefore has its own pipeline;
// an error, an end of stream from a live source, or no frame for --stall-seconds tears that
// pipeline down and starts it again after a back-off (1 s, doubling up to --retry-max-seconds),
// while the other cameras keep running. Its JSON file is appended to, so lines from before
// and after the drop stay in one file. --retries N gives up on a camera after N failed
// attempts in a row (the exit status is then 1, with the last error printed).
//
// --http [ADDR:]PORT adds the control and metrics endpoint (http_api.h): GET /metrics in the
// Prometheus format, GET/POST /streams and GET/DELETE /streams/N to list, add and remove cameras
// while the others run. With it the program is a service: it runs until Ctrl-C (or --duration)
// even when no camera is left. Models stay loaded for the life of the process (one read of the
// model file however often cameras come and go or reconnect).
#include <glib-unix.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <gst/gst.h>
#include <nlohmann/json.hpp>

#include "autoassign/core/files.h"
#include "autoassign/core/types.h"
#include "http_api.h"
#include "inference_mark.h"
#include "metrics.h"
#include "options.h"
#include "plugin.h"
#include "roi_meta.h"

namespace {

// An autoassigndetect that never starts: its keep-models and loaded-models properties are the
// process's model pool's.
GstElement* g_pool_view = nullptr;

size_t loaded_models() {
  guint n = 0;
  if (g_pool_view) g_object_get(g_pool_view, "loaded-models", &n, nullptr);
  return n;
}

using Clock = std::chrono::steady_clock;

struct Settings {
  std::string model, output = "-";
  double threshold = 0.5;
  std::string precision = "auto";
  bool drop_when_busy = false;
  bool track = false;
  std::string mqtt, topic = "autoassign";
  int threads = 0;
  int retries = -1;  // failed attempts in a row before giving up on a camera; -1 = never
  int retry_max_seconds = 30;
  int stall_seconds = 10;
  double duration = 0;  // seconds; 0 = until Ctrl-C or every camera has finished
  // Cameras at once (command line and POST /streams together): each costs a pipeline, a few
  // threads and ~40 MB (measured: 20 streams took the process from 262 MB to 1.03 GB).
  int max_streams = 16;
  std::string http, http_token, http_token_file;
  std::vector<std::string> sources;
};

// Shared: a stopped pipeline's streaming threads may still count its last frames (its probe
// holds a reference) after the camera is removed.
struct Camera : std::enable_shared_from_this<Camera> {
  int index = 0;
  std::string source;
  bool live = true;  // EOS from a live source is a drop, from a file the end
  GstElement* pipeline = nullptr;
  guint bus_watch = 0;
  guint restart_timer = 0;
  std::atomic<int64_t> frames{0}, frames_with_objects{0};
  std::atomic<int64_t> inferences{0};  // frames whose boxes are a new result of the model
  std::atomic<int64_t> skipped{0};     // frames that passed on without one (drop-when-busy)
  std::atomic<int64_t> detections{0};  // objects on the frames written, as the JSON lines hold
  autoassign::pipelines::LatencyHistogram latency;  // model time per inference, seconds
  std::atomic<int64_t> last_frame_ms{0};  // Clock time of the last frame, for the stall watch
  int64_t frames_at_start = 0;
  int64_t frames_at_sample = 0, sample_ms = 0;  // for the frame rate GET /streams shows
  double fps = 0;
  int failures = 0;  // in a row
  int reconnects = 0;
  int backoff_s = 1;
  bool finished = false, gave_up = false;
  std::string last_error;
  // Pipelines of this camera whose NULL has been queued and not yet returned: a restart waits
  // for them, so two pipelines of one camera never run (and append) at once, and a source whose
  // open() never returns holds one stopping pipeline, not one more per restart.
  std::atomic<int> stopping{0};
};

Settings g_options;
std::vector<std::shared_ptr<Camera>> g_cameras;
GMainLoop* g_loop = nullptr;
std::atomic<bool> g_stopping{false};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

using autoassign::pipelines::quote;

// What the program prints or writes of a URL or an error about one: credentials redacted.
std::string shown(const std::string& text) { return autoassign::redact_credentials(text); }

// The source part of a camera's pipeline: RTSP over TCP (interleaved: works through NAT and
// firewalls, and a dropped server is seen as a closed connection), V4L2, a file, a test pattern.
std::string source_description(const std::string& source, bool* live) {
  *live = true;
  if (source == "test") return "videotestsrc is-live=true pattern=ball";
  if (source.rfind("rtsp://", 0) == 0 || source.rfind("rtsps://", 0) == 0) {
    return "rtspsrc location=" + quote(source) +
           " latency=200 protocols=tcp tcp-timeout=5000000 ! decodebin";
  }
  if (source.rfind("/dev/video", 0) == 0) return "v4l2src device=" + quote(source);
  // Other URIs (file://, http:// clips) end: their end of stream is the end, not a drop.
  *live = false;
  if (source.find("://") != std::string::npos) return "uridecodebin uri=" + quote(source);
  return "filesrc location=" + quote(source) + " ! decodebin";
}

std::string json_location(const Camera& cam) {
  if (g_options.output == "-") return "-";
  return g_options.output + "/camera-" + std::to_string(cam.index) + ".jsonl";
}

// On the sink's pad, after autoassignjson: what is counted here is what the JSON lines hold.
GstPadProbeReturn on_frame(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Camera* cam = static_cast<std::shared_ptr<Camera>*>(data)->get();
  GstBuffer* buffer = GST_PAD_PROBE_INFO_BUFFER(info);
  ++cam->frames;
  const size_t objects = autoassign::gst::read_rois(buffer).size();
  if (objects > 0) ++cam->frames_with_objects;
  cam->detections += static_cast<int64_t>(objects);
  double ms = 0;
  if (autoassign::gst::read_inference_mark(buffer, &ms) == 0) {
    ++cam->skipped;
  } else {
    ++cam->inferences;
    if (ms > 0) cam->latency.observe(ms / 1000.0);
  }
  cam->last_frame_ms = now_ms();
  return GST_PAD_PROBE_OK;
}

// Without --http the program ends when every camera has ended or been given up on; with it,
// it is a service that waits for cameras to be added.
void maybe_quit() {
  if (!g_options.http.empty()) return;
  for (const auto& c : g_cameras) {
    if (!c->finished && !c->gave_up) return;
  }
  g_main_loop_quit(g_loop);
}

void start_camera(Camera* cam);

gboolean on_restart_timer(gpointer data) {
  auto* cam = static_cast<Camera*>(data);
  cam->restart_timer = 0;
  if (g_stopping) return G_SOURCE_REMOVE;
  if (cam->stopping > 0) {  // the previous pipeline is still stopping: look again shortly
    cam->restart_timer = g_timeout_add(250, on_restart_timer, cam);
    return G_SOURCE_REMOVE;
  }
  start_camera(cam);
  return G_SOURCE_REMOVE;
}

// A camera's state changes run on a thread pool of their own, never on the main loop: that
// thread serves HTTP and signals, and a source's open() can block (a file on a stuck network
// mount, one another process holds a lease on): a blocked POST /streams froze every later
// request and Ctrl-C. The main loop only builds and forgets pipelines. The pool has no thread
// limit (a blocked source holds one thread, not the other cameras), and each change holds its
// own reference to the pipeline until it has returned, so the last unref of a pipeline (its
// elements' finalizers, the model it shares) happens on the pool before exit waits for it,
// never beside the process's exit. A retired pipeline is marked before its NULL is queued;
// PLAYING checks the mark under the pipeline's state lock, so a camera removed while it starts
// never ends up playing unowned.
struct StateChanges {
  GThreadPool* pool = nullptr;
  std::mutex lock;
  std::condition_variable done;
  int in_flight = 0;

  struct Change {
    GstElement* pipeline;  // a reference the change owns
    GstState target;
    std::shared_ptr<Camera> camera;  // for NULL: whose `stopping` to count down
    gint64 queued_us;                // monotonic
  };
  std::set<Change*> stopping;  // NULLs queued and not yet returned, of every camera (under lock)
  static constexpr const char* kRetired = "autoassign-retired";

  static void run(gpointer data, gpointer self) {
    auto* c = static_cast<Change*>(data);
    if (c->target == GST_STATE_PLAYING) {
      GST_STATE_LOCK(c->pipeline);
      if (!g_object_get_data(G_OBJECT(c->pipeline), kRetired) &&
          gst_element_set_state(c->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        GST_INFO("PLAYING failed; the error on the bus says why");
      }
      GST_STATE_UNLOCK(c->pipeline);
    } else {
      gst_element_set_state(c->pipeline, c->target);
    }
    gst_object_unref(c->pipeline);
    if (c->camera) --c->camera->stopping;
    auto* changes = static_cast<StateChanges*>(self);
    std::lock_guard<std::mutex> l(changes->lock);
    changes->stopping.erase(c);
    delete c;
    --changes->in_flight;
    changes->done.notify_all();
  }
  // `pipeline`: a reference handed to the change (its last one, for a retired pipeline, so the
  // pipeline is finalised on the pool).
  void queue(GstElement* pipeline, GstState target, std::shared_ptr<Camera> camera = nullptr) {
    if (!pool) pool = g_thread_pool_new(&StateChanges::run, this, -1, FALSE, nullptr);
    if (camera) ++camera->stopping;
    auto* c = new Change{pipeline, target, std::move(camera), g_get_monotonic_time()};
    {
      std::lock_guard<std::mutex> l(lock);
      ++in_flight;
      if (target == GST_STATE_NULL) stopping.insert(c);
    }
    g_thread_pool_push(pool, c, nullptr);
  }
  // Pipelines whose NULL was queued more than a second ago and has not returned: stuck in their
  // source, each holding a pool thread. (A normal stop takes milliseconds: a camera removed and
  // added again at once is not one.)
  int stuck() {
    const gint64 before = g_get_monotonic_time() - G_USEC_PER_SEC;
    std::lock_guard<std::mutex> l(lock);
    return static_cast<int>(std::count_if(stopping.begin(), stopping.end(),
                                          [&](const Change* c) { return c->queued_us < before; }));
  }
  // At exit: true once every queued change has returned (the pool is then freed), false after
  // `seconds`.
  bool finish(double seconds) {
    {
      std::unique_lock<std::mutex> l(lock);
      if (!done.wait_for(l, std::chrono::duration<double>(seconds),
                         [&] { return in_flight == 0; })) {
        return false;
      }
    }
    if (pool) g_thread_pool_free(pool, FALSE, TRUE);
    pool = nullptr;
    return true;
  }
};
StateChanges g_state_changes;

// Forgets the camera's pipeline at once (its bus watch removed: no message of it reaches the
// camera again) and stops it on the pool. Its streaming threads may run on meanwhile; they
// touch only the camera's counters, which its frame probe keeps alive.
void stop_pipeline(Camera* cam) {
  if (!cam->pipeline) return;
  if (cam->bus_watch) g_source_remove(cam->bus_watch);
  cam->bus_watch = 0;
  g_object_set_data(G_OBJECT(cam->pipeline), StateChanges::kRetired, GINT_TO_POINTER(1));
  g_state_changes.queue(cam->pipeline, GST_STATE_NULL, cam->shared_from_this());  // its reference
  cam->pipeline = nullptr;
}

// The camera dropped (or never came up): tear down and try again after the back-off.
void fail(Camera* cam, const std::string& why) {
  stop_pipeline(cam);
  if (g_stopping) return;
  const bool got_frames = cam->frames > cam->frames_at_start;
  if (got_frames) {  // it had been working: a fresh drop, not a failed attempt
    cam->failures = 0;
    cam->backoff_s = 1;
  }
  ++cam->failures;
  cam->last_error = why;
  if (g_options.retries >= 0 && cam->failures > g_options.retries) {
    std::fprintf(stderr, "camera %d (%s): %s; giving up after %d attempt(s)\n", cam->index,
                 shown(cam->source).c_str(), shown(why).c_str(), cam->failures);
    cam->gave_up = true;
    maybe_quit();
    return;
  }
  std::fprintf(stderr, "camera %d (%s): %s; reconnecting in %d s\n", cam->index,
               shown(cam->source).c_str(), shown(why).c_str(), cam->backoff_s);
  ++cam->reconnects;
  cam->restart_timer =
      g_timeout_add_seconds(static_cast<guint>(cam->backoff_s), on_restart_timer, cam);
  cam->backoff_s = std::min(cam->backoff_s * 2, std::max(1, g_options.retry_max_seconds));
}

gboolean on_bus(GstBus*, GstMessage* msg, gpointer data) {
  auto* cam = static_cast<Camera*>(data);
  switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_ERROR: {
      GError* err = nullptr;
      gchar* dbg = nullptr;
      gst_message_parse_error(msg, &err, &dbg);
      const std::string why =
          std::string("error from ") + GST_OBJECT_NAME(msg->src) + ": " + err->message;
      const std::string from = GST_MESSAGE_SRC(msg) ? GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)) : "";
      // A model that cannot load (the detect element's RESOURCE or LIBRARY errors) will not
      // load on a retry either, for any camera: stop everything. A frame that fails inference
      // (STREAM) is this camera's problem: restart it like a drop.
      const bool model_error = from.rfind("detect", 0) == 0 && (err->domain == GST_RESOURCE_ERROR ||
                                                                err->domain == GST_LIBRARY_ERROR);
      // An output that cannot be written (permissions, a missing folder) stays so: give up on
      // this camera instead of retrying forever.
      const bool output_error = from.rfind("json", 0) == 0 && err->domain == GST_RESOURCE_ERROR;
      g_error_free(err);
      g_free(dbg);
      if (model_error) {
        std::fprintf(stderr, "camera %d: %s\n", cam->index, shown(why).c_str());
        cam->gave_up = true;
        cam->last_error = why;
        stop_pipeline(cam);
        g_main_loop_quit(g_loop);
        return G_SOURCE_REMOVE;
      }
      if (output_error) {
        std::fprintf(stderr, "camera %d (%s): %s; giving up (the output cannot be written)\n",
                     cam->index, shown(cam->source).c_str(), shown(why).c_str());
        cam->gave_up = true;
        cam->last_error = why;
        stop_pipeline(cam);
        maybe_quit();
        return G_SOURCE_REMOVE;
      }
      fail(cam, why);
      return G_SOURCE_REMOVE;  // the watch went with the pipeline
    }
    case GST_MESSAGE_EOS:
      if (cam->live && !g_stopping) {
        fail(cam, "end of stream from a live source");
      } else {
        stop_pipeline(cam);
        cam->finished = true;
        maybe_quit();
      }
      return G_SOURCE_REMOVE;
    default:
      return G_SOURCE_CONTINUE;
  }
}

void start_camera(Camera* cam) {
  const std::string desc =
      source_description(cam->source, &cam->live) +
      " ! videoconvert ! video/x-raw,format=NV12 ! autoassigndetect name=detect" +
      std::to_string(cam->index) + " model-file=" + quote(g_options.model) +
      " threshold=" + std::to_string(g_options.threshold) +
      " threads=" + std::to_string(g_options.threads) + " precision=" + quote(g_options.precision) +
      (g_options.drop_when_busy ? " drop-when-busy=true" : "") +
      (g_options.track ? " ! autoassigntrack" : "") + " ! autoassignjson name=json" +
      std::to_string(cam->index) + " append=true location=" + quote(json_location(*cam)) +
      " source=" + quote(shown(cam->source)) +
      (g_options.mqtt.empty()
           ? ""
           // connect-timeout=0: a broker that is down must neither hold a camera's start nor
           // fail it; the element keeps retrying meanwhile.
           : " ! autoassignpublish connect-timeout=0 address=" + quote(g_options.mqtt) +
                 " topic=" + quote(g_options.topic) + " source=" + quote(shown(cam->source))) +
      " ! fakesink name=sink sync=false async=false";
  GError* err = nullptr;
  cam->pipeline = gst_parse_launch(desc.c_str(), &err);
  if (err) {
    std::fprintf(stderr, "camera %d (%s): bad pipeline: %s\n", cam->index,
                 shown(cam->source).c_str(), err->message);
    g_error_free(err);
    if (cam->pipeline) gst_object_unref(cam->pipeline);
    cam->pipeline = nullptr;
    cam->gave_up = true;
    maybe_quit();
    return;
  }
  GstElement* sink = gst_bin_get_by_name(GST_BIN(cam->pipeline), "sink");
  GstPad* pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_frame,
                    new std::shared_ptr<Camera>(cam->shared_from_this()),
                    [](gpointer p) { delete static_cast<std::shared_ptr<Camera>*>(p); });
  gst_object_unref(pad);
  gst_object_unref(sink);
  GstBus* bus = gst_element_get_bus(cam->pipeline);
  cam->bus_watch = gst_bus_add_watch(bus, on_bus, cam);
  gst_object_unref(bus);
  cam->frames_at_start = cam->frames;
  cam->last_frame_ms = now_ms();
  g_state_changes.queue(GST_ELEMENT(gst_object_ref(cam->pipeline)), GST_STATE_PLAYING);
}

// Every second: a camera that delivered nothing for --stall-seconds is restarted; the frame
// rates are sampled over windows of at least two seconds.
gboolean on_watchdog(gpointer) {
  const int64_t now = now_ms();
  for (auto& cam : g_cameras) {
    if (now - cam->sample_ms >= 2000) {
      const int64_t frames = cam->frames;
      cam->fps =
          cam->sample_ms ? (frames - cam->frames_at_sample) * 1000.0 / (now - cam->sample_ms) : 0.0;
      cam->frames_at_sample = frames;
      cam->sample_ms = now;
    }
  }
  for (auto& cam : g_cameras) {
    if (cam->pipeline && cam->live &&
        now - cam->last_frame_ms > 1000LL * std::max(1, g_options.stall_seconds)) {
      fail(cam.get(), "no frame for " + std::to_string(g_options.stall_seconds) + " s");
    }
  }
  return G_SOURCE_CONTINUE;
}

// ---- the --http endpoint's view of the cameras (all on the main loop's thread) ----

int g_next_id = 0;

Camera* new_camera(const std::string& source) {
  auto cam = std::make_shared<Camera>();
  cam->index = g_next_id++;
  cam->source = source;
  g_cameras.push_back(std::move(cam));
  return g_cameras.back().get();
}

std::string state_of(const Camera& cam) {
  if (cam.gave_up) return "failed";
  if (cam.finished) return "finished";
  if (cam.restart_timer) return "reconnecting";
  if (cam.pipeline && cam.frames > cam.frames_at_start) return "running";
  return "starting";
}

long resident_bytes() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  in >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

class CameraService : public autoassign::pipelines::StreamService {
 public:
  std::vector<autoassign::pipelines::StreamInfo> streams() override {
    std::vector<autoassign::pipelines::StreamInfo> list;
    for (const auto& c : g_cameras) {
      autoassign::pipelines::StreamInfo s;
      s.id = c->index;
      s.uri = shown(c->source);
      s.state = state_of(*c);
      s.fps = c->fps;
      s.frames = c->frames;
      s.reconnects = c->reconnects;
      s.output = json_location(*c);
      s.last_error = shown(c->last_error);
      list.push_back(std::move(s));
    }
    return list;
  }

  int add(const std::string& uri) override {
    if (g_stopping) throw autoassign::pipelines::BadSource("the service is stopping");
    if (static_cast<int>(g_cameras.size()) >= g_options.max_streams) {
      throw autoassign::pipelines::TooManyStreams("the service runs at most " +
                                                  std::to_string(g_options.max_streams) +
                                                  " streams (--max-streams); remove one first");
    }
    // Pipelines that never finish stopping (a source blocked in open()) each hold a thread:
    // they count against the limit beside the cameras, so repeated add and remove cannot pile
    // them up.
    if (const int stuck = g_state_changes.stuck();
        stuck > 0 && static_cast<int>(g_cameras.size()) + stuck >= g_options.max_streams) {
      throw autoassign::pipelines::TooManyStreams(
          std::to_string(stuck) +
          " camera pipelines are still stopping (a source is blocked); try again later");
    }
    // Anything that is not a URI, a device or the test pattern is a local file: it must exist
    // now, or the camera would only retry a name that cannot work.
    const bool is_file =
        uri != "test" && uri.find("://") == std::string::npos && uri.rfind("/dev/video", 0) != 0;
    struct stat st {};
    if (is_file && (stat(uri.c_str(), &st) != 0 || !S_ISREG(st.st_mode))) {
      throw autoassign::pipelines::BadSource("'" + uri +
                                             "' is not a URI, a /dev/video device, 'test' or an "
                                             "existing file");
    }
    // A file:// URI must name a regular file too: filesrc opens it on this thread (the one
    // that serves HTTP and signals), and a FIFO nobody writes froze the whole service there.
    if (uri.rfind("file://", 0) == 0) {
      gchar* path = g_filename_from_uri(uri.c_str(), nullptr, nullptr);
      const std::string problem =
          path ? autoassign::regular_file_problem(path) : std::string("is not a valid file URI");
      g_free(path);
      if (!problem.empty()) {
        throw autoassign::pipelines::BadSource("'" + uri + "' " + problem);
      }
    }
    Camera* cam = new_camera(uri);
    std::fprintf(stderr, "camera %d (%s): added\n", cam->index, shown(uri).c_str());
    start_camera(cam);
    return cam->index;
  }

  bool remove(int id) override {
    for (auto it = g_cameras.begin(); it != g_cameras.end(); ++it) {
      Camera* cam = it->get();
      if (cam->index != id) continue;
      if (cam->restart_timer) g_source_remove(cam->restart_timer);
      cam->restart_timer = 0;
      stop_pipeline(cam);  // its last frames may still be counted: the probe holds the camera
      std::fprintf(stderr, "camera %d (%s): removed after %lld frames\n", cam->index,
                   shown(cam->source).c_str(), static_cast<long long>(cam->frames.load()));
      g_cameras.erase(it);
      return true;
    }
    return false;
  }

  std::string metrics() override {
    autoassign::pipelines::Exposition m;
    using L = autoassign::pipelines::Exposition::Labels;
    struct Counter {
      const char* name;
      const char* help;
      double (*value)(const Camera&);
    };
    const Counter counters[] = {
        {"autoassign_frames_total", "Frames that went through the camera's pipeline.",
         [](const Camera& c) { return static_cast<double>(c.frames); }},
        {"autoassign_inferences_total", "Frames whose boxes are a new result of the model.",
         [](const Camera& c) { return static_cast<double>(c.inferences); }},
        {"autoassign_dropped_frames_total",
         "Frames passed on without an inference of their own (drop-when-busy).",
         [](const Camera& c) { return static_cast<double>(c.skipped); }},
        {"autoassign_detections_total", "Objects on the frames written (as in the JSON lines).",
         [](const Camera& c) { return static_cast<double>(c.detections); }},
        {"autoassign_reconnects_total", "Times the camera was restarted after a drop.",
         [](const Camera& c) { return static_cast<double>(c.reconnects); }},
    };
    for (const auto& counter : counters) {
      m.family(counter.name, "counter", counter.help);
      for (const auto& c : g_cameras) {
        m.sample(counter.name, L{{"camera", std::to_string(c->index)}}, counter.value(*c));
      }
    }
    m.family("autoassign_inference_latency_seconds", "histogram",
             "Time the model took per inference.");
    for (const auto& c : g_cameras) {
      m.histogram("autoassign_inference_latency_seconds", L{{"camera", std::to_string(c->index)}},
                  c->latency.snapshot());
    }
    // One group per family (HELP, TYPE, then every camera's sample), as the format requires.
    m.family("autoassign_camera_up", "gauge", "1 while the camera delivers frames, else 0.");
    for (const auto& c : g_cameras) {
      m.sample("autoassign_camera_up", L{{"camera", std::to_string(c->index)}},
               state_of(*c) == "running" ? 1 : 0);
    }
    m.family("autoassign_camera_info", "gauge", "The camera's source (credentials redacted).");
    for (const auto& c : g_cameras) {
      m.sample("autoassign_camera_info",
               L{{"camera", std::to_string(c->index)},
                 {"uri", shown(c->source)},
                 {"state", state_of(*c)}},
               1);
    }
    m.family("autoassign_cameras", "gauge", "Cameras configured.");
    m.sample("autoassign_cameras", {}, static_cast<double>(g_cameras.size()));
    m.family("autoassign_models_loaded", "gauge", "Models held in memory by the process.");
    m.sample("autoassign_models_loaded", {}, static_cast<double>(loaded_models()));
    m.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    m.sample("process_resident_memory_bytes", {}, static_cast<double>(resident_bytes()));
    return m.text();
  }
};

gboolean on_stop(gpointer) {
  g_stopping = true;
  g_main_loop_quit(g_loop);
  return G_SOURCE_REMOVE;
}

// SIGINT/SIGTERM through GLib's signal source: the handler runs in the main loop, where
// g_main_loop_quit is allowed (it is not async-signal-safe in a plain signal handler).
gboolean on_quit_signal(gpointer) {
  g_stopping = true;
  g_main_loop_quit(g_loop);
  return G_SOURCE_CONTINUE;
}

const char* kUsage =
    "usage: autoassign-cameras [--model MODEL] [options] SOURCE...\n"
    "       autoassign-cameras [--model MODEL] --http 127.0.0.1:8080 [options] [SOURCE...]\n"
    "       autoassign-cameras --config /etc/autoassign-gst/cameras.json [options]\n"
    "Runs every SOURCE through autoassigndetect ! autoassignjson in one process, sharing one\n"
    "loaded model, and restarts a camera that drops. SIGINT or SIGTERM stops it cleanly.\n"
    "SOURCE: rtsp://... (over TCP), /dev/videoN, any URI, a file, or 'test' (a pattern)\n";

// The settings as a config file holds them (--print-settings): what --config FILE and the
// flags resolve to, to check a config or compare the two.
std::string settings_json(const Settings& o) {
  const nlohmann::json j = {{"model", o.model},
                            {"output", o.output},
                            {"threshold", o.threshold},
                            {"threads", o.threads},
                            {"precision", o.precision},
                            {"drop_when_busy", o.drop_when_busy},
                            {"track", o.track},
                            {"mqtt", o.mqtt},
                            {"topic", o.topic},
                            {"retries", o.retries},
                            {"retry_max_seconds", o.retry_max_seconds},
                            {"stall_seconds", o.stall_seconds},
                            {"duration", o.duration},
                            {"max_streams", o.max_streams},
                            {"http", o.http},
                            {"http_token_file", o.http_token_file},
                            {"sources", o.sources}};
  return j.dump(2);
}

// The bearer token from a file: its first line, which must not be empty.
std::string read_token_file(const std::string& path) {
  std::string text = autoassign::read_file_capped(path, 4096, "token file");
  text = text.substr(0, text.find_first_of("\r\n"));
  if (text.empty()) throw std::runtime_error(path + ": the token file's first line is empty");
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  // Sockets, cameras and outputs all take files: the soft open-files limit goes up to the hard
  // one (as daemons do), so a burst of connections cannot exhaust it as easily.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 65536);
    setrlimit(RLIMIT_NOFILE, &files);
  }
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  Settings& o = g_options;
  autoassign::pipelines::Options cli(kUsage);
  cli.config_file("--config", "sources",
                  "the options as one JSON object: field \"a_b\" for --a-b\n(\"model\", "
                  "\"threshold\", \"track\": true, ...) and \"sources\": [...];\nthe command line "
                  "overrides it");
  cli.model(&o.model);
  cli.value("--output", &o.output, "DIR|-",
            "DIR/camera-N.jsonl per source, or '-' for stdout (default)");
  cli.value("--threshold", &o.threshold, "T", "score threshold (default 0.5)", 0, 1);
  cli.value(autoassign::kThreadsOption, &o.threads);
  cli.value(autoassign::kPrecisionOption, &o.precision);
  cli.flag("--drop-when-busy", &o.drop_when_busy,
           "infer on the newest frame only; never queue behind inference");
  cli.flag("--track", &o.track,
           "give every face a stable id (autoassigntrack; \"id\" in the JSON)");
  cli.value("--mqtt", &o.mqtt, "HOST:PORT",
            "also publish each frame's JSON to this MQTT broker (one\nthat is down is retried; "
            "meanwhile 1000 documents queue)");
  cli.value("--topic", &o.topic, "T",
            "MQTT topic (default autoassign); \"source\" names the camera");
  cli.value("--retries", &o.retries, "N",
            "give up on a camera after N failed attempts in a row\n(default: never)", 0);
  cli.value("--retry-max-seconds", &o.retry_max_seconds, "S",
            "longest back-off between attempts (default 30)", 1, 86400);
  cli.value("--stall-seconds", &o.stall_seconds, "S",
            "restart a live camera that sends nothing for S s (default 10)", 1, 86400);
  cli.value("--duration", &o.duration, "S",
            "stop after S seconds (default: Ctrl-C, or all sources ended)", 0, 4e6);
  cli.value("--max-streams", &o.max_streams, "N",
            "cameras at once, given and added (default 16; each costs ~40 MB);\n"
            "POST /streams beyond it answers 429",
            1, 1024);
  cli.value("--http", &o.http, "[HOST:]PORT",
            "control and metrics endpoint (a bare port binds 127.0.0.1;\nport 0: any free port); "
            "runs until Ctrl-C.\nGET /metrics (Prometheus), GET /streams,\n"
            "POST /streams {\"uri\": ...}, GET and DELETE /streams/N");
  cli.value("--http-token-file", &o.http_token_file, "FILE",
            "require 'Authorization: Bearer T', T the file's first line\n(needed for any address "
            "but loopback; or set\nAUTOASSIGN_HTTP_TOKEN; never on the command line)");
  bool print_settings = false;
  cli.flag("--print-settings", &print_settings,
           "print the settings (the config file's fields) and exit");
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--http-token") {
      return cli.fail(
          "--http-token: a command line is visible to every user of the machine (ps); put the "
          "token in a file (--http-token-file) or in AUTOASSIGN_HTTP_TOKEN");
    }
  }
  if (const int status = cli.parse(argc, argv, &o.sources); status >= 0) return status;
  if (print_settings) {
    std::printf("%s\n", settings_json(o).c_str());
    return 0;
  }
  if (o.sources.empty() && o.http.empty()) {
    return cli.fail("give a SOURCE, or --http to add cameras at run time");
  }
  if (static_cast<int>(o.sources.size()) > o.max_streams) {
    return cli.fail(std::to_string(o.sources.size()) + " sources, more than --max-streams " +
                    std::to_string(o.max_streams));
  }
  if (!o.mqtt.empty()) {
    // Refused here, not found out later: a broker drops what is published to an invalid topic
    // without a word (240 frames published, 0 received, exit 0).
    if (const std::string why = autoassign::mqtt_publish_topic_problem(o.topic); !why.empty()) {
      return cli.fail("--topic: " + why);
    }
    std::string host;
    int port = 0;
    if (!autoassign::parse_host_port(o.mqtt, 1883, &host, &port) || port == 0) {
      return cli.fail("--mqtt must be HOST:PORT with a port in 1..65535, got '" +
                      autoassign::sanitize_utf8(o.mqtt) + "'");
    }
  }
  if (!o.http_token_file.empty()) {
    try {
      o.http_token = read_token_file(o.http_token_file);
    } catch (const std::exception& e) {
      return cli.fail(std::string("--http-token-file: ") + e.what());
    }
  } else if (std::getenv("AUTOASSIGN_HTTP_TOKEN")) {
    o.http_token = std::getenv("AUTOASSIGN_HTTP_TOKEN");
  }
  if (o.output != "-") g_mkdir_with_parents(o.output.c_str(), 0755);
  // Cameras come and go (reconnections, DELETE and POST /streams): load each model once. The
  // model pool is process-wide; an autoassigndetect that never starts sets and reads it.
  g_pool_view =
      GST_ELEMENT(gst_object_ref_sink(gst_element_factory_make("autoassigndetect", nullptr)));
  g_object_set(g_pool_view, "keep-models", TRUE, nullptr);
  g_loop = g_main_loop_new(nullptr, FALSE);
  CameraService service;
  std::unique_ptr<autoassign::pipelines::HttpServer> http;
  if (!o.http.empty()) {
    try {
      http = std::make_unique<autoassign::pipelines::HttpServer>(service, o.http_token);
      http->listen(o.http);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "autoassign-cameras: %s\n", e.what());
      return 2;
    }
    std::fprintf(stderr, "http: listening on %s\n", http->url().c_str());
  }
  for (const auto& source : o.sources) new_camera(source);
  for (auto& cam : g_cameras) start_camera(cam.get());
  // (Models load as the cameras start, on the pool: their count is printed at the end.)
  std::fprintf(stderr, "%zu camera(s) starting\n", g_cameras.size());
  const guint watchdog = g_timeout_add_seconds(1, on_watchdog, nullptr);
  if (o.duration > 0) g_timeout_add(static_cast<guint>(o.duration * 1000), on_stop, nullptr);
  const guint sigint = g_unix_signal_add(SIGINT, on_quit_signal, nullptr);
  const guint sigterm = g_unix_signal_add(SIGTERM, on_quit_signal, nullptr);
  const auto t0 = Clock::now();
  g_main_loop_run(g_loop);
  g_stopping = true;
  g_source_remove(watchdog);
  // The signal sources stay until exit: a second Ctrl-C during teardown is ignored.
  (void)sigint;
  (void)sigterm;
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::fprintf(stderr, "models loaded: %zu\n", loaded_models());
  int status = 0;
  for (auto& cam : g_cameras) {
    if (cam->restart_timer) g_source_remove(cam->restart_timer);
    stop_pipeline(cam.get());
  }
  // Every camera's stop (and any start still under way) has returned before the counts are
  // final. One that does not within kStopSeconds is stuck in its source (an open() that never
  // returns): say so and leave, rather than hang the service's stop.
  constexpr double kStopSeconds = 20;
  if (!g_state_changes.finish(kStopSeconds)) {
    std::fprintf(stderr,
                 "autoassign-cameras: a camera's pipeline did not stop within %.0f s (its source "
                 "is blocked); exiting without it\n",
                 kStopSeconds);
    std::fflush(stdout);
    std::_Exit(1);
  }
  for (auto& cam : g_cameras) {
    std::printf("camera %d %s: %lld frames (%.1f/s), %lld with objects, %d reconnect(s)%s%s\n",
                cam->index, shown(cam->source).c_str(), static_cast<long long>(cam->frames.load()),
                cam->frames / std::max(seconds, 1e-9),
                static_cast<long long>(cam->frames_with_objects.load()), cam->reconnects,
                cam->gave_up ? ", gave up: " : "", cam->gave_up ? cam->last_error.c_str() : "");
    if (cam->gave_up) status = 1;
  }
  http.reset();
  g_main_loop_unref(g_loop);
  return status;
}
