/* SPDX-License-Identifier: MIT */
// autoassign-gst-bench: what the element costs on top of the library, and how a live source
// fares with drop-when-busy. Prints tables; not a test.
//
//   1. the same frame N times: the bare Detector, then `... ! autoassigndetect ! fakesink`
//      (frames/s each, and the element's overhead in percent);
//   2. N live 30 fps streams (--streams 1,2,4; videotestsrc, or --image held), each through
//      autoassigndetect (synchronous, then drop-when-busy) and autoassignjson into a synchronised
//      sink: frames/s and inferences/s per stream, whether that is real time, the buffers' latency
//      (clock time at the sink, just after the JSON is written, minus the capture running time) and
//      the age of the boxes they carry, and the process's CPU use;
//   3. with --mqtt HOST:PORT (a running broker): the messages per second autoassignpublish
//      sustains to it (QoS 0 and 1, counted by a subscriber in this process), and the live runs
//      again with autoassigntrack and autoassignpublish added to every stream, for the cost of
//      tracking and publishing next to the same run without them.
#include <mosquitto.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gst/gst.h>
#include <gst/video/video.h>

#include "autoassign/infer/detector.h"
#include "inference_mark.h"
#include "plugin.h"
#include "roi_meta.h"
#include "video_frame.h"

namespace {

struct Args {
  std::string model, image;
  int width = 640, height = 360, frames = 100, threads = 2, live_seconds = 10;
  std::string format = "NV12";
  std::vector<int> streams = {1};
  int rounds = 5;
  std::string mqtt;           // HOST:PORT of a broker: adds the MQTT and analytics tables
  int mqtt_messages = 20000;  // per QoS in the throughput table
  bool skip_overhead = false;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string source(const Args& a) {
  const std::string caps = "video/x-raw,format=" + a.format + ",width=" + std::to_string(a.width) +
                           ",height=" + std::to_string(a.height);
  if (a.image.empty()) return "videotestsrc pattern=ball ! " + caps;
  return "filesrc location=" + a.image + " ! decodebin ! videoconvert ! videoscale ! " + caps;
}

GstPadProbeReturn stamp(GstPad*, GstPadProbeInfo*, gpointer data) {
  static_cast<std::vector<std::chrono::steady_clock::time_point>*>(data)->push_back(
      std::chrono::steady_clock::now());
  return GST_PAD_PROBE_OK;
}

// Runs a pipeline with a "sink" element to EOS; returns the arrival times of its buffers.
std::vector<std::chrono::steady_clock::time_point> run_to_eos(const std::string& description) {
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(description.c_str(), &err);
  if (!p) {
    std::fprintf(stderr, "pipeline: %s\n", err->message);
    std::exit(2);
  }
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  GstElement* sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  GstPad* pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, stamp, &arrivals, nullptr);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(
      bus, GST_CLOCK_TIME_NONE, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    gst_message_parse_error(m, &err, nullptr);
    std::fprintf(stderr, "error: %s\n", err->message);
    std::exit(2);
  }
  gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(pad);
  gst_object_unref(sink);
  gst_object_unref(p);
  return arrivals;
}

struct LiveStats {
  std::vector<double> latency_ms;     // sink clock time - buffer running time (PTS)
  std::vector<double> box_age_ms;     // buffer PTS - PTS of the frame its boxes were computed on
  std::vector<GstClockTime> sources;  // distinct source PTS seen: the inferences delivered
  int frames = 0, with_detections = 0;
  int fresh = 0;  // buffers marked with a new inference result (counts with or without boxes)
  GstElement* pipeline = nullptr;
};

GstPadProbeReturn on_sink_buffer(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* st = static_cast<LiveStats*>(data);
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  GstClock* clock = gst_element_get_clock(st->pipeline);
  if (clock && GST_BUFFER_PTS_IS_VALID(b)) {
    const GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(st->pipeline);
    st->latency_ms.push_back((static_cast<double>(now) - static_cast<double>(GST_BUFFER_PTS(b))) /
                             1e6);
  }
  if (clock) gst_object_unref(clock);
  ++st->frames;
  if (autoassign::gst::read_inference_mark(b) == 1) ++st->fresh;
  const auto rois = autoassign::gst::read_rois(b);
  if (!rois.empty()) {
    ++st->with_detections;
    if (GST_BUFFER_PTS_IS_VALID(b) && GST_CLOCK_TIME_IS_VALID(rois[0].source_pts)) {
      // How old the boxes on this frame are: the metadata's end-to-end latency is the
      // buffer's plus this.
      st->box_age_ms.push_back(
          (static_cast<double>(GST_BUFFER_PTS(b)) - static_cast<double>(rois[0].source_pts)) / 1e6);
      if (st->sources.empty() || st->sources.back() != rois[0].source_pts)
        st->sources.push_back(rois[0].source_pts);
    }
  }
  return GST_PAD_PROBE_OK;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

// N live 30 fps streams in one pipeline (one clock), each through its own autoassigndetect
// (one shared model) and autoassignjson into a synchronised sink. A stream is real time when it
// delivers ~30 frames/s: in synchronous mode a live source that waits on inference skips frames.
// `analytics`: autoassigntrack after the detector and autoassignpublish (to --mqtt) after the
// JSON writer, as autoassign-cameras --track --mqtt runs them.
// With --image, each stream is that photo held as a live 30 fps source (real faces for the
// tracker and real documents to publish) at threshold 0.5; otherwise a moving test pattern at
// threshold 0 (boxes on every frame, for the box ages).
void live_run(const Args& a, int streams, bool drop, bool analytics = false) {
  std::string d;
  const std::string caps = "video/x-raw,format=" + a.format + ",width=" + std::to_string(a.width) +
                           ",height=" + std::to_string(a.height);
  const std::string count = std::to_string(30 * a.live_seconds);
  for (int i = 0; i < streams; ++i) {
    d += (a.image.empty()
              ? "videotestsrc is-live=true pattern=ball num-buffers=" + count + " ! " + caps +
                    ",framerate=30/1"
              : "filesrc location=" + a.image + " ! decodebin ! videoconvert ! videoscale ! " +
                    caps + " ! imagefreeze is-live=true num-buffers=" + count + " ! " + caps +
                    ",framerate=30/1") +
         " ! autoassigndetect threshold=" + (a.image.empty() ? "0.0" : "0.5") +
         " model-file=" + a.model + " threads=" + std::to_string(a.threads) +
         (drop ? " drop-when-busy=true" : "") + (analytics ? " ! autoassigntrack" : "") +
         " ! autoassignjson location=/dev/null" +
         (analytics
              ? " ! autoassignpublish address=" + a.mqtt + " topic=bench/stream" + std::to_string(i)
              : "") +
         " ! fakesink name=sink" + std::to_string(i) + " sync=true ";
  }
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(d.c_str(), &err);
  if (!pipeline) {
    std::fprintf(stderr, "pipeline: %s\n", err->message);
    std::exit(2);
  }
  std::vector<LiveStats> st(static_cast<size_t>(streams));
  for (int i = 0; i < streams; ++i) {
    st[i].pipeline = pipeline;
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), ("sink" + std::to_string(i)).c_str());
    GstPad* pad = gst_element_get_static_pad(sink, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_sink_buffer, &st[i], nullptr);
    gst_object_unref(pad);
    gst_object_unref(sink);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = cpu_seconds();
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* m =
      gst_bus_timed_pop_filtered(bus, (a.live_seconds + 60) * GST_SECOND,
                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const double s = seconds_since(t0);
  const double cpu = 100 * (cpu_seconds() - cpu0) / s;  // percent of one core
  if (m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    gst_message_parse_error(m, &err, nullptr);
    std::fprintf(stderr, "error: %s\n", err->message);
    std::exit(2);
  }
  if (m) gst_message_unref(m);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  LiveStats all;
  int frames = 0, inferences = 0;
  for (const auto& x : st) {
    frames += x.frames;
    inferences += x.fresh > 0 ? x.fresh : static_cast<int>(x.sources.size());
    all.latency_ms.insert(all.latency_ms.end(), x.latency_ms.begin(), x.latency_ms.end());
    all.box_age_ms.insert(all.box_age_ms.end(), x.box_age_ms.begin(), x.box_age_ms.end());
  }
  const double fps = frames / s / streams;
  const std::string mode =
      std::string(drop ? "drop-when-busy" : "synchronous") + (analytics ? "+track+mqtt" : "");
  std::printf("%-26s %7d %13.1f %10.1f %10.1f %8.1f %12.1f %8.1f %6.0f%% %s\n", mode.c_str(),
              streams, fps, inferences / s / streams, percentile(all.latency_ms, 0.5),
              percentile(all.latency_ms, 0.9), percentile(all.box_age_ms, 0.5),
              percentile(all.box_age_ms, 0.9), cpu, fps >= 29 ? "yes" : "no");
  gst_object_unref(bus);
  gst_object_unref(pipeline);
}

// A subscriber in this process that counts what the broker delivers on a topic.
class Subscriber {
 public:
  Subscriber(const std::string& address, const std::string& topic) {
    std::string host;
    int port = 0;
    if (!autoassign::parse_host_port(address, 1883, &host, &port) || port == 0) {
      throw std::invalid_argument("--mqtt '" + address + "' is not HOST:PORT");
    }
    mosquitto_lib_init();
    client_ = mosquitto_new(nullptr, true, this);
    mosquitto_message_callback_set(client_, [](mosquitto*, void* self, const mosquitto_message*) {
      ++static_cast<Subscriber*>(self)->received;
    });
    if (mosquitto_connect(client_, host.c_str(), port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_subscribe(client_, nullptr, topic.c_str(), 1) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(client_) != MOSQ_ERR_SUCCESS) {
      throw std::runtime_error("cannot subscribe at the broker " + address);
    }
  }
  ~Subscriber() {
    mosquitto_disconnect(client_);
    mosquitto_loop_stop(client_, true);
    mosquitto_destroy(client_);
  }
  std::atomic<int64_t> received{0};

 private:
  mosquitto* client_ = nullptr;
};

// Small frames as fast as they come, each one JSON document to the broker: what the element
// sustains end to end (received by the subscriber), and what its queue had to drop.
void mqtt_run(const Args& a, int qos) {
  const std::string topic = "bench/rate" + std::to_string(qos);
  Subscriber sub(a.mqtt, topic);
  g_usleep(300000);  // the subscription is in place before the first message
  const std::string d =
      "videotestsrc num-buffers=" + std::to_string(a.mqtt_messages) +
      " ! video/x-raw,width=64,height=64 ! autoassignpublish name=pub address=" + a.mqtt +
      " topic=" + topic + " qos=" + std::to_string(qos) +
      " max-queue=1000 drain-timeout=30000 ! fakesink sync=false";
  GstElement* pipeline = gst_parse_launch(d.c_str(), nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = cpu_seconds();
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* m = gst_bus_timed_pop_filtered(
      bus, 120 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  // EOS comes after the element drained its queue; the last messages may still be in flight.
  guint64 published = 0, dropped = 0;
  GstElement* pub = gst_bin_get_by_name(GST_BIN(pipeline), "pub");
  g_object_get(pub, "published", &published, "dropped", &dropped, nullptr);
  gst_object_unref(pub);
  for (int i = 0; i < 50 && sub.received < static_cast<int64_t>(published); ++i) g_usleep(100000);
  const double s = seconds_since(t0);
  const double cpu = 100 * (cpu_seconds() - cpu0) / s;
  const bool error = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR;
  if (m) gst_message_unref(m);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  std::printf("%4d %9d %10llu %8llu %9lld %9.2f %12.0f %6.0f%%%s\n", qos, a.mqtt_messages,
              static_cast<unsigned long long>(published), static_cast<unsigned long long>(dropped),
              static_cast<long long>(sub.received.load()), s, sub.received / s, cpu,
              error ? "  (pipeline error)" : "");
}

}  // namespace

// Table 1: the same frame through the bare Detector and through the element, in rounds.
int overhead_table(const Args& a) {
  // The frame, once, through the same front part of the pipeline.
  GstElement* grab = gst_parse_launch((source(a) + " ! appsink name=out").c_str(), nullptr);
  if (a.image.empty()) {
    GstElement* src = gst_bin_get_by_name(GST_BIN(grab), "videotestsrc0");
    g_object_set(src, "num-buffers", 1, nullptr);
    gst_object_unref(src);
  }
  GstElement* out = gst_bin_get_by_name(GST_BIN(grab), "out");
  gst_element_set_state(grab, GST_STATE_PLAYING);
  GstSample* sample = nullptr;
  g_signal_emit_by_name(out, "pull-sample", &sample);
  if (!sample) {
    std::fprintf(stderr, "could not produce a frame\n");
    return 2;
  }
  GstVideoInfo info;
  gst_video_info_from_caps(&info, gst_sample_get_caps(sample));
  GstVideoFrame frame{};  // zeroed: frame_view reads its map table
  gst_video_frame_map(&frame, &info, gst_sample_get_buffer(sample), GST_MAP_READ);

  autoassign::DetectorOptions o;
  o.threads = a.threads;
  o.threshold = 0.5f;
  autoassign::Detector det(a.model, o);
  const auto view = autoassign::gst::frame_view(&frame);
  for (int i = 0; i < 3; ++i) det.detect(view);  // warm-up
  // Rounds that alternate the bare library and the element on the same frame, so drifts of
  // this shared machine (frequency, neighbours) hit both alike; medians over the rounds.
  const std::string still =
      source(a) + " ! imagefreeze num-buffers=" + std::to_string(a.frames + 3) +
      " ! autoassigndetect threshold=0.5 threads=" + std::to_string(a.threads) +
      " model-file=" + a.model + " ! fakesink name=sink sync=false";
  std::vector<double> bare_ms, element_ms, ratio;
  size_t found = 0;
  for (int round = 0; round < a.rounds; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.frames; ++i) found = det.detect(view).size();
    bare_ms.push_back(1000 * seconds_since(t0) / a.frames);
    // imagefreeze repeats one decoded frame; the first 3 are the warm-up, as in the bare run,
    // and the time between the arrivals of frame 3 and frame N+3 covers N frames.
    const auto arrivals = run_to_eos(still);
    if (arrivals.size() < 4) {
      std::fprintf(stderr, "only %zu frames arrived; need at least 4\n", arrivals.size());
      return 2;
    }
    element_ms.push_back(1000 *
                         std::chrono::duration<double>(arrivals.back() - arrivals[2]).count() /
                         static_cast<double>(arrivals.size() - 3));
    ratio.push_back(element_ms.back() / bare_ms.back());
  }
  gst_video_frame_unmap(&frame);
  gst_sample_unref(sample);
  gst_element_set_state(grab, GST_STATE_NULL);
  gst_object_unref(out);
  gst_object_unref(grab);
  const double bare = percentile(bare_ms, 0.5), element = percentile(element_ms, 0.5);
  std::printf("\n%dx%d %s, %d rounds of %d frames, %d threads, %zu detections per frame\n", a.width,
              a.height, a.format.c_str(), a.rounds, a.frames, a.threads, found);
  std::printf("%-34s %10s %10s %10s %10s\n", "path", "frames/s", "ms/frame", "min", "max");
  std::printf("%-34s %10.1f %10.2f %10.2f %10.2f\n", "Detector::detect (bare library)", 1000 / bare,
              bare, *std::min_element(bare_ms.begin(), bare_ms.end()),
              *std::max_element(bare_ms.begin(), bare_ms.end()));
  std::printf("%-34s %10.1f %10.2f %10.2f %10.2f\n", "imagefreeze ! autoassigndetect",
              1000 / element, element, *std::min_element(element_ms.begin(), element_ms.end()),
              *std::max_element(element_ms.begin(), element_ms.end()));
  const double overhead = 100 * (percentile(ratio, 0.5) - 1);
  std::printf("element overhead (median of per-round ratios): %+.1f%% (target < 5%%: %s)\n",
              overhead, overhead < 5 ? "met" : "NOT met");
  return 0;
}

int run(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model = v;
    else if (k == "--image")
      a.image = v;
    else if (k == "--frames")
      a.frames = std::stoi(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--format")
      a.format = v;
    else if (k == "--live-seconds")
      a.live_seconds = std::stoi(v);
    else if (k == "--rounds")
      a.rounds = std::max(1, std::stoi(v));
    else if (k == "--mqtt")
      a.mqtt = v;
    else if (k == "--mqtt-messages")
      a.mqtt_messages = std::max(1, std::stoi(v));
    else if (k == "--skip-overhead")
      a.skip_overhead = v == "1" || v == "true" || v == "yes";
    else if (k == "--streams") {
      a.streams.clear();
      for (size_t pos = 0; pos < v.size();) {
        const size_t comma = v.find(',', pos);
        a.streams.push_back(std::stoi(v.substr(pos, comma - pos)));
        pos = comma == std::string::npos ? v.size() : comma + 1;
      }
    } else if (k == "--size") {
      if (!autoassign::parse_size(v, &a.width, &a.height)) {
        std::fprintf(stderr, "--size: expected WxH, got '%s'\n", v.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.model.empty()) {
    std::fprintf(
        stderr,
        "usage: autoassign-gst-bench --model M [--image JPG] [--size 640x360] [--format NV12]\n"
        "                            [--frames 100] [--threads 2] [--live-seconds 10]\n"
        "                            [--streams 1,2,4] [--rounds 5]\n"
        "                            [--mqtt HOST:PORT [--mqtt-messages 20000]]\n"
        "                            [--skip-overhead yes]\n");
    return 2;
  }
  if (!a.skip_overhead) {
    if (const int status = overhead_table(a); status != 0) return status;
  }
  std::printf("\nlive 30 fps %dx%d %s streams, %d s, one pipeline, sinks sync=true\n", a.width,
              a.height, a.image.empty() ? "videotestsrc" : a.image.c_str(), a.live_seconds);
  std::printf("%-26s %7s %13s %10s %10s %8s %12s %8s %7s %s\n", "mode", "streams", "frames/s/str",
              "infer/s/str", "buf p50 ms", "p90", "box age p50", "p90", "CPU", "real time");
  for (int n : a.streams) {
    live_run(a, n, false);
    live_run(a, n, true);
    if (!a.mqtt.empty()) live_run(a, n, true, true);
  }
  if (!a.mqtt.empty()) {
    std::printf(
        "\nautoassignpublish to the broker at %s: 64x64 frames as fast as they come, "
        "max-queue 1000\n",
        a.mqtt.c_str());
    std::printf("%4s %9s %10s %8s %9s %9s %12s %7s\n", "qos", "frames", "published", "dropped",
                "received", "seconds", "received/s", "CPU");
    for (int qos : {0, 1}) mqtt_run(a, qos);
  }
  return 0;
}

int main(int argc, char** argv) {
  // A bad model file or option the library rejects: a message and status 1, not an abort.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autoassign-gst-bench: %s\n", e.what());
    return 1;
  }
}
