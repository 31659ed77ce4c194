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
#include <glib-unix.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gst/gst.h>

#include "gstautoassigndetect.h"
#include "options.h"
#include "plugin.h"
#include "roi.h"

namespace {

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
  std::vector<std::string> sources;
};

struct Camera {
  int index = 0;
  std::string source;
  bool live = true;  // EOS from a live source is a drop, from a file the end
  GstElement* pipeline = nullptr;
  guint bus_watch = 0;
  guint restart_timer = 0;
  std::atomic<int64_t> frames{0}, frames_with_objects{0};
  std::atomic<int64_t> last_frame_ms{0};  // Clock time of the last frame, for the stall watch
  int64_t frames_at_start = 0;
  int failures = 0;  // in a row
  int reconnects = 0;
  int backoff_s = 1;
  bool finished = false, gave_up = false;
  std::string last_error;
};

Settings g_options;
std::vector<std::unique_ptr<Camera>> g_cameras;
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

GstPadProbeReturn on_frame(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* cam = static_cast<Camera*>(data);
  ++cam->frames;
  if (!autoassign::gst::read_rois(GST_PAD_PROBE_INFO_BUFFER(info)).empty())
    ++cam->frames_with_objects;
  cam->last_frame_ms = now_ms();
  return GST_PAD_PROBE_OK;
}

void maybe_quit() {
  for (const auto& c : g_cameras) {
    if (!c->finished && !c->gave_up) return;
  }
  g_main_loop_quit(g_loop);
}

void start_camera(Camera* cam);

gboolean on_restart_timer(gpointer data) {
  auto* cam = static_cast<Camera*>(data);
  cam->restart_timer = 0;
  if (!g_stopping) start_camera(cam);
  return G_SOURCE_REMOVE;
}

void stop_pipeline(Camera* cam) {
  if (!cam->pipeline) return;
  if (cam->bus_watch) g_source_remove(cam->bus_watch);
  cam->bus_watch = 0;
  gst_element_set_state(cam->pipeline, GST_STATE_NULL);
  gst_object_unref(cam->pipeline);
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
           : " ! autoassignpublish address=" + quote(g_options.mqtt) +
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
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_frame, cam, nullptr);
  gst_object_unref(pad);
  gst_object_unref(sink);
  GstBus* bus = gst_element_get_bus(cam->pipeline);
  cam->bus_watch = gst_bus_add_watch(bus, on_bus, cam);
  gst_object_unref(bus);
  cam->frames_at_start = cam->frames;
  cam->last_frame_ms = now_ms();
  if (gst_element_set_state(cam->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The error message on the bus says why; it arrives through on_bus.
    GST_INFO("camera %d: PLAYING failed", cam->index);
  }
}

// Every second: a camera that delivered nothing for --stall-seconds is restarted.
gboolean on_watchdog(gpointer) {
  const int64_t now = now_ms();
  for (auto& cam : g_cameras) {
    if (cam->pipeline && cam->live &&
        now - cam->last_frame_ms > 1000LL * std::max(1, g_options.stall_seconds)) {
      fail(cam.get(), "no frame for " + std::to_string(g_options.stall_seconds) + " s");
    }
  }
  return G_SOURCE_CONTINUE;
}

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
    "usage: autoassign-cameras --model MODEL [options] SOURCE...\n"
    "Runs every SOURCE through autoassigndetect ! autoassignjson in one process, sharing one\n"
    "loaded model, and restarts a camera that drops.\n"
    "SOURCE: rtsp://... (over TCP), /dev/videoN, any URI, a file, or 'test' (a pattern)\n"
    "  --output DIR|-          DIR/camera-N.jsonl per source, or '-' for stdout (default)\n"
    "  --threshold T           score threshold (default 0.5)\n"
    "  --threads N             LibTorch threads (default: one per core)\n"
    "  --precision P           auto (bf16 on CPUs with AMX or AVX512-BF16), fp32, bf16\n"
    "  --drop-when-busy        infer on the newest frame only; never queue behind inference\n"
    "  --track                 give every face a stable id (autoassigntrack; \"id\" in the JSON)\n"
    "  --mqtt HOST:PORT        also publish each frame's JSON to this MQTT broker\n"
    "  --topic T               MQTT topic (default autoassign); \"source\" names the camera\n"
    "  --retries N             give up on a camera after N failed attempts in a row\n"
    "                          (default: never)\n"
    "  --retry-max-seconds S   longest back-off between attempts (default 30)\n"
    "  --stall-seconds S       restart a live camera that sends nothing for S s (default 10)\n"
    "  --duration S            stop after S seconds (default: Ctrl-C, or all sources ended)\n";

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  Settings& o = g_options;
  autoassign::pipelines::Options cli(kUsage);
  cli.value("--model", &o.model);
  cli.value("--output", &o.output);
  cli.value("--threshold", &o.threshold);
  cli.value("--threads", &o.threads);
  cli.value("--precision", &o.precision);
  cli.value("--retries", &o.retries);
  cli.value("--retry-max-seconds", &o.retry_max_seconds);
  cli.value("--stall-seconds", &o.stall_seconds);
  cli.value("--duration", &o.duration);
  cli.flag("--drop-when-busy", &o.drop_when_busy);
  cli.flag("--track", &o.track);
  cli.value("--mqtt", &o.mqtt);
  cli.value("--topic", &o.topic);
  if (const int status = cli.parse(argc, argv, &o.sources); status >= 0) return status;
  if (o.model.empty() || o.sources.empty()) return cli.fail("--model and a SOURCE are required");
  if (o.output != "-") g_mkdir_with_parents(o.output.c_str(), 0755);
  g_loop = g_main_loop_new(nullptr, FALSE);
  for (size_t i = 0; i < o.sources.size(); ++i) {
    auto cam = std::make_unique<Camera>();
    cam->index = static_cast<int>(i);
    cam->source = o.sources[i];
    g_cameras.push_back(std::move(cam));
  }
  for (auto& cam : g_cameras) start_camera(cam.get());
  std::fprintf(stderr, "%zu camera(s), models loaded: %zu\n", g_cameras.size(),
               autoassign_detect_loaded_models());
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
  std::fprintf(stderr, "models loaded: %zu\n", autoassign_detect_loaded_models());
  int status = 0;
  for (auto& cam : g_cameras) {
    if (cam->restart_timer) g_source_remove(cam->restart_timer);
    stop_pipeline(cam.get());
    std::printf("camera %d %s: %lld frames (%.1f/s), %lld with objects, %d reconnect(s)%s%s\n",
                cam->index, shown(cam->source).c_str(), static_cast<long long>(cam->frames.load()),
                cam->frames / std::max(seconds, 1e-9),
                static_cast<long long>(cam->frames_with_objects.load()), cam->reconnects,
                cam->gave_up ? ", gave up: " : "", cam->gave_up ? cam->last_error.c_str() : "");
    if (cam->gave_up) status = 1;
  }
  g_main_loop_unref(g_loop);
  return status;
}
