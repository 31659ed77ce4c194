/* SPDX-License-Identifier: MIT */
/**
 * SECTION:element-autoassignpublish
 *
 * Pass-through element that publishes one JSON document per frame (the document
 * autoassignjson writes: timestamp, resolution, source, objects with their ids) as DL Streamer's
 * gvametapublish does: to an MQTT broker (`method=mqtt`, libmosquitto) on `topic`, or appended
 * to a file (`method=file`, JSON lines at `location`).
 *
 * It never blocks the stream: documents go to a bounded queue (`max-queue`) that a sender
 * thread drains; when the broker is slow or gone the oldest documents are dropped, counted in
 * the read-only `dropped` property, and a warning is posted once per episode. The connection
 * is re-established automatically (back-off from 1 s up to 10 s); an attempt that gets no
 * answer is given up after `keepalive` seconds, and stopping the element never waits on one.
 * At start the element waits up to
 * `connect-timeout` ms for the first connection and fails with a RESOURCE error naming the
 * broker if there is none (`connect-timeout=0`: no wait, the connection is retried while
 * documents queue); at end of stream it waits up to `drain-timeout` ms for the queue to
 * empty before passing EOS, so a short run delivers every document.
 *
 * |[
 * gst-launch-1.0 rtspsrc location=rtsp://camera/stream ! decodebin ! videoconvert ! \
 *     autoassigndetect model-file=face-rt.pt ! autoassigntrack ! \
 *     autoassignpublish address=127.0.0.1:1883 topic=cameras/door ! fakesink
 * ]|
 */
#include "gstautoassignpublish.h"

#include <mosquitto.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "autoassign/core/types.h"
#include "element.h"
#include "frame_json.h"
#include "roi_meta.h"

GST_DEBUG_CATEGORY_STATIC(gst_auto_assign_publish_debug);
#define GST_CAT_DEFAULT gst_auto_assign_publish_debug

enum {
  PROP_0,
  PROP_METHOD,
  PROP_ADDRESS,
  PROP_TOPIC,
  PROP_CLIENT_ID,
  PROP_QOS,
  PROP_LOCATION,
  PROP_SOURCE,
  PROP_MAX_QUEUE,
  PROP_CONNECT_TIMEOUT,
  PROP_DRAIN_TIMEOUT,
  PROP_KEEPALIVE,
  PROP_DROPPED,
  PROP_PUBLISHED,
  PROP_CONNECTED,
};

namespace {

constexpr int kMaxInflight = 64;  // documents handed to libmosquitto and not yet sent

// Written by properties (any thread), under the settings lock.
struct Settings {
  std::string method = "mqtt", address = "127.0.0.1:1883", topic = "autoassign", client_id;
  std::string location, source;
  int qos = 0;
  guint max_queue = 1000, connect_timeout_ms = 5000, drain_timeout_ms = 5000;
  guint keepalive_s = 30;
};

// Made at start from the settings of that moment, closed at stop (gst-plugins-rs's
// Settings/State split). Its two threads and libmosquitto's callbacks share `lock`; it stays
// readable after stop (the counters of the run) until the next start replaces it.
struct State {
  explicit State(Settings s) : cfg(std::move(s)) {}
  Settings cfg;     // as at start; `source` follows its property while playing
  std::mutex lock;  // guards everything below
  std::condition_variable cv;
  std::deque<std::string> queue;
  guint64 dropped = 0, published = 0;
  bool warned = false;  // a drop warning was posted in the current episode
  bool connected = false;
  bool stopping = false;          // the sender leaves
  bool network_stopping = false;  // then the connection's thread
  std::string host;
  int port = 0;
  int inflight = 0;
  guint64 disconnects = 0;  // lets the sender tell whether a failed publish was already counted
  mosquitto* client = nullptr;
  FILE* file = nullptr;
  std::thread sender, network;
  autoassign::gst::VideoSize size;
};

}  // namespace

struct GstAutoAssignPublishPrivate {
  std::mutex settings_lock;
  Settings settings;
  std::mutex state_lock;  // guards the pointer; users hold their own reference
  std::shared_ptr<State> state;
};

struct _GstAutoAssignPublish {
  GstBaseTransform parent;
  GstAutoAssignPublishPrivate* priv;
};

G_DEFINE_TYPE(GstAutoAssignPublish, gst_auto_assign_publish, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE(autoassignpublish, "autoassignpublish", GST_RANK_NONE,
                            GST_TYPE_AUTO_ASSIGN_PUBLISH);

namespace {

// libmosquitto callbacks, on its network thread.
void on_connect(mosquitto*, void* data, int rc) {
  auto* st = static_cast<State*>(data);
  std::lock_guard<std::mutex> lock(st->lock);
  st->connected = rc == 0;
  st->cv.notify_all();
}

void on_disconnect(mosquitto*, void* data, int) {
  auto* st = static_cast<State*>(data);
  std::lock_guard<std::mutex> lock(st->lock);
  st->connected = false;
  // What was handed to libmosquitto and not yet written is lost with the connection at QoS 0
  // (counted as dropped, so published + dropped + queued accounts for every document); at QoS
  // 1 and 2 libmosquitto resends it after reconnecting.
  if (st->cfg.qos == 0) st->dropped += static_cast<guint64>(st->inflight);
  st->inflight = 0;
  ++st->disconnects;
  st->cv.notify_all();
}

void on_publish(mosquitto*, void* data, int) {
  auto* st = static_cast<State*>(data);
  std::lock_guard<std::mutex> lock(st->lock);
  if (st->inflight > 0) --st->inflight;
  ++st->published;
  st->cv.notify_all();
}

// The connection, on a thread of ours rather than libmosquitto's mosquitto_loop_start, whose
// thread (2.0.11, measured) never retries a first connection that was refused at once, and
// reconnects with a blocking connect(): against an address that swallows connection attempts
// (a firewalled or switched-off host) that blocks for the kernel's ~2 min connect timeout, and
// stopping the element (mosquitto_loop_stop) with it. Here every attempt is
// mosquitto_connect_async (a non-blocking connect; one that gets no answer is closed by
// libmosquitto's keepalive check), retried after 1, 2, 4, 8, then every 10 s, and
// `network_stopping` is looked at at least every 100 ms. mosquitto_publish on the sender thread
// wakes the loop (mosquitto_threaded_set). Only this thread makes connection attempts.
void network_loop(State* st) {
  using Clock = std::chrono::steady_clock;
  auto backoff = std::chrono::seconds(1);
  bool socket_open = false;
  Clock::time_point leave_by{};
  std::unique_lock<std::mutex> lock(st->lock);
  for (;;) {
    if (st->network_stopping) {
      // The DISCONNECT queued by close_outputs goes out first (on_disconnect then clears
      // `connected`), for at most a second.
      if (leave_by == Clock::time_point{}) leave_by = Clock::now() + std::chrono::seconds(1);
      if (!socket_open || !st->connected || Clock::now() >= leave_by) return;
    }
    if (st->connected) backoff = std::chrono::seconds(1);
    mosquitto* client = st->client;
    int rc;
    if (socket_open) {
      lock.unlock();
      rc = mosquitto_loop(client, 100, 1);
    } else {
      const std::string host = st->host;  // read only for an attempt, not every loop
      const int port = st->port, keepalive = static_cast<int>(st->cfg.keepalive_s);
      lock.unlock();
      rc = mosquitto_connect_async(client, host.c_str(), port, keepalive);
      socket_open = rc == MOSQ_ERR_SUCCESS;
    }
    lock.lock();
    if (rc == MOSQ_ERR_SUCCESS) continue;
    socket_open = false;
    if (st->network_stopping) return;
    st->cv.wait_for(lock, backoff, [st] { return st->network_stopping; });
    backoff = std::min(backoff * 2, std::chrono::seconds(10));
  }
}

// Drains the queue: to the broker while connected (at most kMaxInflight unsent at a time), or
// to the file.
void sender_loop(State* st) {
  std::unique_lock<std::mutex> lock(st->lock);
  auto ready = [&] {
    return st->stopping ||
           (!st->queue.empty() && (st->file || (st->connected && st->inflight < kMaxInflight)));
  };
  for (;;) {
    st->cv.wait(lock, ready);
    if (st->stopping) return;
    std::string doc = std::move(st->queue.front());
    st->queue.pop_front();
    if (st->file) {
      lock.unlock();
      std::fwrite(doc.data(), 1, doc.size(), st->file);
      std::fputc('\n', st->file);
      std::fflush(st->file);
      lock.lock();
      ++st->published;
      st->cv.notify_all();
      continue;
    }
    ++st->inflight;
    mosquitto* client = st->client;
    const std::string topic = st->cfg.topic;
    const int qos = st->cfg.qos;
    const guint64 disconnects = st->disconnects;
    lock.unlock();
    const int rc = mosquitto_publish(client, nullptr, topic.c_str(), static_cast<int>(doc.size()),
                                     doc.data(), qos, false);
    lock.lock();
    if (rc != MOSQ_ERR_SUCCESS) {
      // The connection went down under us: keep the document for the next one. The connection
      // state is libmosquitto's (on_connect / on_disconnect): setting it here could overwrite
      // a reconnection that happened meanwhile and stall publishing for good. A disconnect in
      // between counted this document as dropped (QoS 0) and cleared it from the in-flight
      // count: it is queued again instead, so it is counted once.
      if (st->disconnects != disconnects) {
        if (st->cfg.qos == 0 && st->dropped > 0) --st->dropped;
      } else if (st->inflight > 0) {
        --st->inflight;
      }
      st->queue.push_front(std::move(doc));
      st->cv.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
}

void close_outputs(State* st) {
  {
    std::lock_guard<std::mutex> lock(st->lock);
    st->stopping = true;
  }
  st->cv.notify_all();
  if (st->sender.joinable()) st->sender.join();
  if (st->client) {
    mosquitto_disconnect(st->client);  // queued for the connection's thread to send
    {
      std::lock_guard<std::mutex> lock(st->lock);
      st->network_stopping = true;
    }
    st->cv.notify_all();
    if (st->network.joinable()) st->network.join();
    mosquitto_destroy(st->client);
    st->client = nullptr;
  }
  if (st->file) std::fclose(st->file);
  st->file = nullptr;
  std::lock_guard<std::mutex> lock(st->lock);
  st->queue.clear();
  st->connected = false;
  st->inflight = 0;
  st->stopping = false;
  st->network_stopping = false;
}

// Opens the file, or creates the MQTT client, starts its threads and waits for the broker
// (connect-timeout); `st` is not yet visible to the streaming thread.
gboolean start_outputs(GstBaseTransform* trans, State* st) {
  std::unique_lock<std::mutex> lock(st->lock);
  if (st->cfg.method == "file") {
    std::string error;
    st->file = autoassign::gst::open_output(st->cfg.location, true, &error);
    if (!st->file) {
      GST_ELEMENT_ERROR(
          trans, RESOURCE, OPEN_WRITE,
          ("cannot open '%s' for appending: %s", st->cfg.location.c_str(), error.c_str()),
          (nullptr));
      return FALSE;
    }
  } else {
    // An invalid topic is refused here too (the property refuses it when set): a broker drops
    // what is published to one without a word.
    if (const std::string why = autoassign::mqtt_publish_topic_problem(st->cfg.topic);
        !why.empty()) {
      GST_ELEMENT_ERROR(trans, RESOURCE, SETTINGS, ("topic: %s", why.c_str()), (nullptr));
      return FALSE;
    }
    std::string host;
    int port = 0;
    if (!autoassign::parse_host_port(st->cfg.address, 1883, &host, &port) || port == 0) {
      GST_ELEMENT_ERROR(trans, RESOURCE, SETTINGS,
                        ("address must be host:port, got '%s'", st->cfg.address.c_str()),
                        (nullptr));
      return FALSE;
    }
    const std::string client_id = st->cfg.client_id;
    // Set up without st->lock held: libmosquitto takes its callback mutex here and holds it
    // around on_connect, which takes st->lock (one lock order, as ThreadSanitizer checks).
    lock.unlock();
    static const int init = mosquitto_lib_init();
    (void)init;
    mosquitto* client = mosquitto_new(client_id.empty() ? nullptr : client_id.c_str(), true, st);
    if (!client) {
      GST_ELEMENT_ERROR(trans, RESOURCE, SETTINGS, ("cannot create an MQTT client"), (nullptr));
      return FALSE;
    }
    mosquitto_connect_callback_set(client, on_connect);
    mosquitto_disconnect_callback_set(client, on_disconnect);
    mosquitto_publish_callback_set(client, on_publish);
    mosquitto_threaded_set(client, true);  // our threads drive it (network_loop)
    lock.lock();
    st->client = client;
    st->host = host;
    st->port = port;
    st->network = std::thread(network_loop, st);
    st->sender = std::thread(sender_loop, st);
    // connect-timeout 0: no wait; documents queue (and the oldest drop) until an attempt
    // connects. A camera service starting before its broker wants that.
    const bool up = st->cfg.connect_timeout_ms == 0 ||
                    st->cv.wait_for(lock, std::chrono::milliseconds(st->cfg.connect_timeout_ms),
                                    [&] { return st->connected; });
    if (!up) {
      const std::string address = st->cfg.address;
      const guint ms = st->cfg.connect_timeout_ms;
      lock.unlock();
      close_outputs(st);
      GST_ELEMENT_ERROR(
          trans, RESOURCE, OPEN_WRITE,
          ("cannot connect to the MQTT broker at %s within %u ms", address.c_str(), ms), (nullptr));
      return FALSE;
    }
  }
  if (!st->sender.joinable()) st->sender = std::thread(sender_loop, st);  // the file's
  return TRUE;
}

// No exception may cross into GStreamer's C code (std::thread and the strings can throw).
gboolean publish_start(GstBaseTransform* trans) {
  auto* priv = GST_AUTO_ASSIGN_PUBLISH(trans)->priv;
  std::shared_ptr<State> st;
  {
    std::lock_guard<std::mutex> lock(priv->settings_lock);
    st = std::make_shared<State>(priv->settings);
  }
  try {
    if (!start_outputs(trans, st.get())) return FALSE;
    std::lock_guard<std::mutex> lock(priv->state_lock);
    priv->state = st;
    return TRUE;
  } catch (const std::exception& e) {
    close_outputs(st.get());
    GST_ELEMENT_ERROR(trans, RESOURCE, FAILED, ("cannot start publishing: %s", e.what()),
                      (nullptr));
  } catch (...) {
    close_outputs(st.get());
    GST_ELEMENT_ERROR(trans, RESOURCE, FAILED, ("cannot start publishing"), (nullptr));
  }
  return FALSE;
}

std::shared_ptr<State> state_of(GstAutoAssignPublish* self) {
  std::lock_guard<std::mutex> lock(self->priv->state_lock);
  return self->priv->state;
}

gboolean publish_stop(GstBaseTransform* trans) {
  // Closed, not dropped: its counters stay readable until the next start.
  if (auto st = state_of(GST_AUTO_ASSIGN_PUBLISH(trans))) close_outputs(st.get());
  return TRUE;
}

gboolean publish_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps*) {
  autoassign::gst::VideoSize size;
  if (!autoassign::gst::video_size_of(incaps, &size)) return FALSE;
  if (auto st = state_of(GST_AUTO_ASSIGN_PUBLISH(trans))) {
    std::lock_guard<std::mutex> lock(st->lock);
    st->size = size;
  }
  return TRUE;
}

// End of stream: give the queue a bounded time to drain, so a short run delivers everything.
gboolean publish_sink_event(GstBaseTransform* trans, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
    if (auto st = state_of(GST_AUTO_ASSIGN_PUBLISH(trans))) {
      std::unique_lock<std::mutex> lock(st->lock);
      const bool drained =
          st->cv.wait_for(lock, std::chrono::milliseconds(st->cfg.drain_timeout_ms),
                          [&] { return st->queue.empty() && st->inflight == 0; });
      const size_t left = st->queue.size() + static_cast<size_t>(st->inflight);
      lock.unlock();
      if (!drained) {
        GST_ELEMENT_WARNING(trans, RESOURCE, WRITE,
                            ("%zu documents not delivered at end of stream", left), (nullptr));
      }
    }
  }
  return GST_BASE_TRANSFORM_CLASS(gst_auto_assign_publish_parent_class)->sink_event(trans, event);
}

GstFlowReturn publish_buffer(GstAutoAssignPublish* self, GstBuffer* buffer) {
  auto st = state_of(self);
  if (!st) return GST_FLOW_FLUSHING;
  const auto rois = autoassign::gst::read_rois(buffer);
  std::unique_lock<std::mutex> lock(st->lock);
  std::string doc = autoassign::gst::json_text(autoassign::gst::frame_to_json(
      buffer, rois, st->size.width, st->size.height, st->cfg.source));
  bool warn = false;
  while (st->queue.size() >= st->cfg.max_queue && !st->queue.empty()) {
    st->queue.pop_front();
    ++st->dropped;
    warn = !st->warned;
    st->warned = true;
  }
  if (st->queue.empty() && st->connected) st->warned = false;  // the episode is over
  st->queue.push_back(std::move(doc));
  const std::string address = st->cfg.method == "file" ? st->cfg.location : st->cfg.address;
  lock.unlock();
  st->cv.notify_all();
  if (warn) {
    GST_ELEMENT_WARNING(self, RESOURCE, WRITE,
                        ("%s is slow or unreachable: dropping the oldest documents (see the "
                         "'dropped' property)",
                         address.c_str()),
                        (nullptr));
  }
  return GST_FLOW_OK;
}

GstFlowReturn publish_transform_ip(GstBaseTransform* trans, GstBuffer* buffer) {
  return autoassign::gst::guarded(GST_ELEMENT(trans), "publishing", [&] {
    return publish_buffer(GST_AUTO_ASSIGN_PUBLISH(trans), buffer);
  });
}

void publish_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_PUBLISH(object);
  auto text = [&] {
    const char* v = g_value_get_string(value);
    return autoassign::sanitize_utf8(v ? v : "");
  };
  std::unique_lock<std::mutex> lock(self->priv->settings_lock);
  Settings& s = self->priv->settings;
  switch (prop_id) {
    case PROP_METHOD: {
      const std::string m = text();
      if (m == "mqtt" || m == "file") {
        s.method = m;
      } else {
        g_warning("autoassignpublish: method must be mqtt or file, got '%s'", m.c_str());
      }
      break;
    }
    case PROP_ADDRESS:
      s.address = text();
      break;
    case PROP_TOPIC: {
      // Refused when set, as GLib refuses an out-of-range value: a warning naming it, and the
      // topic stays what it was (a broker would drop every document published to it).
      const char* v = g_value_get_string(value);
      const std::string topic = v ? v : "";
      const std::string why = autoassign::mqtt_publish_topic_problem(topic);
      if (why.empty()) {
        s.topic = topic;
      } else {
        g_warning("autoassignpublish: topic refused: %s; keeping '%s'", why.c_str(),
                  s.topic.c_str());
      }
      break;
    }
    case PROP_CLIENT_ID:
      s.client_id = text();
      break;
    case PROP_QOS:
      s.qos = g_value_get_int(value);
      break;
    case PROP_LOCATION:
      s.location = text();
      break;
    case PROP_SOURCE: {
      s.source = text();
      const std::string source = s.source;
      lock.unlock();
      // Mutable while playing: the running state follows.
      if (auto st = state_of(self)) {
        std::lock_guard<std::mutex> state_lock(st->lock);
        st->cfg.source = source;
      }
      break;
    }
    case PROP_MAX_QUEUE:
      s.max_queue = g_value_get_uint(value);
      break;
    case PROP_CONNECT_TIMEOUT:
      s.connect_timeout_ms = g_value_get_uint(value);
      break;
    case PROP_DRAIN_TIMEOUT:
      s.drain_timeout_ms = g_value_get_uint(value);
      break;
    case PROP_KEEPALIVE:
      s.keepalive_s = g_value_get_uint(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void publish_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_AUTO_ASSIGN_PUBLISH(object);
  // The run's counters, from its state (zero before the first start).
  if (prop_id == PROP_DROPPED || prop_id == PROP_PUBLISHED || prop_id == PROP_CONNECTED) {
    guint64 dropped = 0, published = 0;
    bool connected = false;
    if (auto st = state_of(self)) {
      std::lock_guard<std::mutex> lock(st->lock);
      dropped = st->dropped;
      published = st->published;
      connected = st->connected || st->file;
    }
    if (prop_id == PROP_DROPPED) g_value_set_uint64(value, dropped);
    if (prop_id == PROP_PUBLISHED) g_value_set_uint64(value, published);
    if (prop_id == PROP_CONNECTED) g_value_set_boolean(value, connected);
    return;
  }
  std::lock_guard<std::mutex> lock(self->priv->settings_lock);
  const Settings& s = self->priv->settings;
  switch (prop_id) {
    case PROP_METHOD:
      g_value_set_string(value, s.method.c_str());
      break;
    case PROP_ADDRESS:
      g_value_set_string(value, s.address.c_str());
      break;
    case PROP_TOPIC:
      g_value_set_string(value, s.topic.c_str());
      break;
    case PROP_CLIENT_ID:
      g_value_set_string(value, s.client_id.c_str());
      break;
    case PROP_QOS:
      g_value_set_int(value, s.qos);
      break;
    case PROP_LOCATION:
      g_value_set_string(value, s.location.c_str());
      break;
    case PROP_SOURCE:
      g_value_set_string(value, s.source.c_str());
      break;
    case PROP_MAX_QUEUE:
      g_value_set_uint(value, s.max_queue);
      break;
    case PROP_CONNECT_TIMEOUT:
      g_value_set_uint(value, s.connect_timeout_ms);
      break;
    case PROP_DRAIN_TIMEOUT:
      g_value_set_uint(value, s.drain_timeout_ms);
      break;
    case PROP_KEEPALIVE:
      g_value_set_uint(value, s.keepalive_s);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
}

void publish_finalize(GObject* object) {
  auto* priv = GST_AUTO_ASSIGN_PUBLISH(object)->priv;
  if (priv->state) close_outputs(priv->state.get());
  delete priv;
  G_OBJECT_CLASS(gst_auto_assign_publish_parent_class)->finalize(object);
}

}  // namespace

static void gst_auto_assign_publish_class_init(GstAutoAssignPublishClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_auto_assign_publish_debug, "autoassignpublish", 0,
                          "ROI metadata to MQTT or a file");
  gobject_class->set_property = publish_set_property;
  gobject_class->get_property = publish_get_property;
  gobject_class->finalize = publish_finalize;
  const auto ready = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_READY);
  const auto playing = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                GST_PARAM_MUTABLE_PLAYING);
  const auto readable = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      gobject_class, PROP_METHOD,
      g_param_spec_string("method", "Method", "mqtt (to a broker) or file (JSON lines)", "mqtt",
                          ready));
  g_object_class_install_property(
      gobject_class, PROP_ADDRESS,
      g_param_spec_string("address", "Address", "MQTT broker host:port", "127.0.0.1:1883", ready));
  g_object_class_install_property(
      gobject_class, PROP_TOPIC,
      g_param_spec_string("topic", "Topic", "MQTT topic of the documents", "autoassign", ready));
  g_object_class_install_property(
      gobject_class, PROP_CLIENT_ID,
      g_param_spec_string("client-id", "Client id", "MQTT client id (empty: a random one)", "",
                          ready));
  g_object_class_install_property(
      gobject_class, PROP_QOS,
      g_param_spec_int("qos", "QoS", "MQTT quality of service: 0, 1 or 2", 0, 2, 0, ready));
  g_object_class_install_property(
      gobject_class, PROP_LOCATION,
      g_param_spec_string("location", "Location", "File the documents are appended to (file)", "",
                          ready));
  g_object_class_install_property(
      gobject_class, PROP_SOURCE,
      g_param_spec_string("source", "Source",
                          "Written as \"source\" in every document when set (e.g. the camera's "
                          "URI)",
                          "", playing));
  g_object_class_install_property(
      gobject_class, PROP_MAX_QUEUE,
      g_param_spec_uint("max-queue", "Max queue",
                        "Documents held while the broker is slow or gone; beyond, the oldest "
                        "are dropped",
                        1, 1000000, 1000, ready));
  g_object_class_install_property(
      gobject_class, PROP_CONNECT_TIMEOUT,
      g_param_spec_uint("connect-timeout", "Connect timeout",
                        "Milliseconds to wait at start for the first connection (then a "
                        "RESOURCE error); 0: start at once and keep retrying, documents "
                        "queue meanwhile",
                        0, 600000, 5000, ready));
  g_object_class_install_property(
      gobject_class, PROP_DRAIN_TIMEOUT,
      g_param_spec_uint("drain-timeout", "Drain timeout",
                        "Milliseconds to wait at end of stream for the queue to empty", 0, 600000,
                        5000, ready));
  // libmosquitto accepts 5 s and up (or 0, which would leave a silent address unnoticed).
  g_object_class_install_property(
      gobject_class, PROP_KEEPALIVE,
      g_param_spec_uint("keepalive", "Keepalive",
                        "MQTT keepalive in seconds: a broker silent for this long (or a "
                        "connection attempt unanswered for this long) is given up and retried",
                        5, 65535, 30, ready));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED,
      g_param_spec_uint64("dropped", "Dropped", "Documents dropped because the queue was full", 0,
                          G_MAXUINT64, 0, readable));
  g_object_class_install_property(
      gobject_class, PROP_PUBLISHED,
      g_param_spec_uint64("published", "Published", "Documents sent (or written)", 0, G_MAXUINT64,
                          0, readable));
  g_object_class_install_property(
      gobject_class, PROP_CONNECTED,
      g_param_spec_boolean("connected", "Connected",
                           "Whether the broker connection is up now (always true for a file)",
                           FALSE, readable));
  gst_element_class_set_static_metadata(
      element_class, "AutoAssign metadata publisher", "Filter/Analyzer/Video",
      "Publishes each frame's regions of interest as JSON to MQTT or a file (gvametapublish)",
      "autoassign-gst developers");
  autoassign::gst::add_any_video_pads(element_class);
  trans_class->start = publish_start;
  trans_class->stop = publish_stop;
  trans_class->set_caps = publish_set_caps;
  trans_class->sink_event = publish_sink_event;
  trans_class->transform_ip = publish_transform_ip;
  trans_class->transform_ip_on_passthrough = TRUE;
}

static void gst_auto_assign_publish_init(GstAutoAssignPublish* self) {
  self->priv = new GstAutoAssignPublishPrivate();
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}
