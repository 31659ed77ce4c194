// SPDX-License-Identifier: MIT
// autoassignpublish against a real mosquitto on 127.0.0.1: delivery, restart, unreachable,
// silent brokers, the file method.
#include "harness.h"

namespace autoassign {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A socket listening on a free 127.0.0.1 port with `backlog`; the port in *port.
int loopback_listener(int backlog, int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = loopback(0);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(fd, backlog);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A mosquitto broker on a free 127.0.0.1 port, started and killed like a real one.
class Broker {
 public:
  Broker() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    close(fd);
    conf_ = testing::temp_dir() + "/mosquitto.conf";
    std::ofstream(conf_) << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n";
  }
  ~Broker() { kill_now(); }
  static bool available() { return fs::exists("/usr/sbin/mosquitto"); }
  // Starts it and waits until it accepts connections.
  bool start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 100; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      const sockaddr_in a = loopback(port_);
      const bool up = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      if (up) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string conf_;
};

// A subscriber (libmosquitto) that keeps every payload on a topic, re-subscribing after it
// reconnects.
class Subscriber {
 public:
  Subscriber(int port, std::string topic) : topic_(std::move(topic)) {
    mosquitto_lib_init();
    client_ = mosquitto_new(nullptr, true, this);
    mosquitto_connect_callback_set(client_, [](mosquitto* m, void* self, int rc) {
      auto* s = static_cast<Subscriber*>(self);
      if (rc == 0) mosquitto_subscribe(m, nullptr, s->topic_.c_str(), 0);
    });
    mosquitto_subscribe_callback_set(client_, [](mosquitto*, void* self, int, int, const int*) {
      auto* s = static_cast<Subscriber*>(self);
      std::lock_guard<std::mutex> lock(s->lock_);
      ++s->subscriptions_;
    });
    mosquitto_message_callback_set(client_, [](mosquitto*, void* self, const mosquitto_message* m) {
      auto* s = static_cast<Subscriber*>(self);
      std::lock_guard<std::mutex> lock(s->lock_);
      s->messages_.emplace_back(static_cast<const char*>(m->payload), m->payloadlen);
    });
    mosquitto_reconnect_delay_set(client_, 1, 1, false);
    mosquitto_connect_async(client_, "127.0.0.1", port, 30);
    mosquitto_loop_start(client_);
  }
  ~Subscriber() {
    mosquitto_disconnect(client_);
    mosquitto_loop_stop(client_, false);
    mosquitto_destroy(client_);
  }
  // Waits until `pred(messages, subscriptions)` holds or `seconds` pass.
  template <typename Pred>
  bool wait_for(Pred pred, double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      {
        std::lock_guard<std::mutex> lock(lock_);
        if (pred(messages_, subscriptions_)) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(lock_);
    return messages_;
  }

 private:
  std::string topic_;
  mosquitto* client_ = nullptr;
  std::mutex lock_;
  std::vector<std::string> messages_;
  int subscriptions_ = 0;
};

// Frame i carries one ROI at x = i: the documents say which frame they describe.
GstBuffer* numbered_frame(int i) {
  GstBuffer* b = make_frame(cv::Mat(120, 160, CV_8UC3, cv::Scalar::all(0)), GST_VIDEO_FORMAT_BGR);
  gst_buffer_add_video_region_of_interest_meta(b, "face", static_cast<guint>(i), 10, 20, 20);
  GST_BUFFER_PTS(b) = static_cast<GstClockTime>(i) * GST_SECOND / 30;
  return b;
}

std::vector<int> frame_numbers(const std::vector<std::string>& docs) {
  std::vector<int> xs;
  for (const auto& d : docs) {
    const auto j = nlohmann::json::parse(d);
    xs.push_back(j.at("objects").at(0).at("x").get<int>());
  }
  return xs;
}

// Waits up to `seconds` for autoassignpublish's read-only "connected" to turn true.
bool becomes_connected(GstElement* pub, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (gboolean up = FALSE; std::chrono::steady_clock::now() < end;) {
    g_object_get(pub, "connected", &up, nullptr);
    if (up) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// End of stream into `h`; then every frame first..last must reach `sub` within `seconds`.
void expect_frames_delivered(GstHarness* h, Subscriber& sub, int first, int last, double seconds) {
  gst_harness_push_event(h, gst_event_new_eos());
  ASSERT_TRUE(sub.wait_for(
      [last](auto& m, int) {
        return !m.empty() && nlohmann::json::parse(m.back()).at("objects").at(0).at("x") == last;
      },
      seconds));
  const auto got = frame_numbers(sub.messages());
  for (int i = first; i <= last; ++i) {
    EXPECT_NE(std::find(got.begin(), got.end(), i), got.end()) << "frame " << i << " lost";
  }
}

// Plays `launch` until its first error, end of stream or 10 s: the error (the caller frees it),
// or nullptr.
GError* first_error(const std::string& launch) {
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(launch.c_str(), &err);
  if (!p) return err;
  if (err) g_clear_error(&err);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(
      bus, 10 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
  if (m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) gst_message_parse_error(m, &err, nullptr);
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return err;
}

TEST(Publish, OneDocumentPerFrameDeliveredByEos) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/a");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish topic=cams/a source=door address=" + broker.address()).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  gst_harness_push_event(h, gst_event_new_eos());  // drains before passing EOS
  ASSERT_TRUE(sub.wait_for([](auto& m, int) { return m.size() >= 30; }, 5));
  const auto docs = sub.messages();
  std::vector<int> expected(30);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(frame_numbers(docs), expected);
  EXPECT_EQ(nlohmann::json::parse(docs[0]).at("source"), "door");
  gst_harness_teardown(h);
}

// The broker killed mid-stream: pushing never stalls (documents queue, the oldest dropped past
// max-queue, counted), and after the broker comes back publishing resumes by itself.
TEST(Publish, BrokerRestartMidStreamNeverStalls) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/b");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish topic=cams/b max-queue=5 address=" + broker.address()).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  auto push = [&](int i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // A 30 fps stream: the queue (5 documents) holds up while the broker is up.
  for (int i = 0; i < 10; ++i) {
    push(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  ASSERT_TRUE(sub.wait_for([](auto& m, int) { return m.size() >= 10; }, 5));
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  guint64 published_before = 0;
  g_object_get(pub, "published", &published_before, nullptr);
  broker.kill_now();
  double slowest = 0;
  for (int i = 10; i < 30; ++i) {
    slowest = std::max(slowest, push(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_LT(slowest, 0.2) << "a push waited on the dead broker";
  guint64 dropped = 0, published_after = 0;
  g_object_get(pub, "dropped", &dropped, "published", &published_after, nullptr);
  gst_object_unref(pub);
  // 20 documents into a queue of 5: at least 15 are dropped, except those written to the
  // socket before libmosquitto saw the broker go (QoS 0 cannot know they were lost; they count
  // as published). Every document is accounted for: none vanishes uncounted.
  EXPECT_GE(dropped + (published_after - published_before), 15u);
  EXPECT_GE(dropped, 12u);
  ASSERT_TRUE(broker.start());
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 1; }, 10));  // re-subscribed
  // The element reconnects by itself (libmosquitto's back-off: 1, 4, 9, 10 s); then a 30 fps
  // stream again.
  pub = gst_harness_find_element(h, "autoassignpublish");
  const bool up = becomes_connected(pub, 15);
  gst_object_unref(pub);
  ASSERT_TRUE(up);
  for (int i = 30; i < 40; ++i) {
    push(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  expect_frames_delivered(h, sub, 30, 39, 15);
  gst_harness_teardown(h);
}

// No broker at start: a RESOURCE error naming the broker after connect-timeout, not a hang.
TEST(Publish, UnreachableBrokerIsAClearError) {
  Broker nobody;  // a free port nobody listens on
  const auto t0 = std::chrono::steady_clock::now();
  GError* e = first_error(
      "videotestsrc num-buffers=3 ! autoassignpublish connect-timeout=500 "
      "address=" +
      nobody.address() + " ! fakesink");
  ASSERT_TRUE(e) << "no error";
  EXPECT_TRUE(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
  EXPECT_NE(std::string(e->message).find(nobody.address()), std::string::npos) << e->message;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  g_error_free(e);
}

// connect-timeout=0: the element starts at once with no broker, pushes never wait, and once a
// broker comes up on that port the element connects by itself and what follows is delivered.
TEST(Publish, ConnectTimeoutZeroStartsWithoutABroker) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;  // not started yet
  const auto t0 = std::chrono::steady_clock::now();
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish connect-timeout=0 topic=cams/z max-queue=3 address=" + broker.address())
          .c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  // Far below the 5 s a connect-timeout would wait (a loaded machine is slow, not 5 s slow).
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.5);
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  guint64 dropped = 0;
  g_object_get(pub, "dropped", &dropped, nullptr);
  EXPECT_EQ(dropped, 7u);  // ten documents into a queue of three, nothing sent
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/z");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  if (!becomes_connected(pub, 20)) {  // the sender's retries: 1, 2, 4 ... s
    gst_object_unref(pub);
    gst_harness_teardown(h);
    FAIL() << "not connected 20 s after the broker came up";
  }
  for (int i = 10; i < 15; ++i) {  // each sent before the next: the queue of three holds up
    guint64 before = 0, now = 0;
    g_object_get(pub, "published", &before, nullptr);
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    for (int k = 0; k < 200 && now <= before; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      g_object_get(pub, "published", &now, nullptr);
    }
  }
  gst_object_unref(pub);
  expect_frames_delivered(h, sub, 10, 14, 10);
  gst_harness_teardown(h);
}

// A 127.0.0.1 port that swallows connection attempts (no refusal, no answer), as a firewalled
// or switched-off host does: a listener whose accept queue (backlog 0) is full, so Linux drops
// further SYNs and the connecting side keeps retransmitting.
class SilentPort {
 public:
  SilentPort() {
    listener_ = loopback_listener(0, &port_);
    for (int i = 0; i < 2; ++i) fillers_.push_back(attempt());  // never accepted
  }
  ~SilentPort() {
    for (int fd : fillers_) close(fd);
    close(listener_);
  }
  // True when a new connection attempt is still unanswered after 300 ms.
  bool swallows() {
    const int fd = attempt();
    pollfd p{fd, POLLOUT, 0};
    const bool silent = poll(&p, 1, 300) == 0;
    close(fd);
    return silent;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int attempt() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const sockaddr_in a = loopback(port_);
    connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    return fd;
  }
  int listener_ = -1, port_ = 0;
  std::vector<int> fillers_;
};

// A broker address that never answers: the element (connect-timeout=0) starts at once, gives
// an unanswered attempt up after `keepalive` and tries again, and stopping it never waits on a
// connect (libmosquitto's own loop thread reconnects with a blocking connect(), which held the
// stop for the kernel's ~2 min connect timeout).
TEST(Publish, SilentBrokerAddressNeverHoldsTheStop) {
  SilentPort port;
  ASSERT_TRUE(port.swallows()) << "this kernel answers or refuses past a full accept queue";
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish connect-timeout=0 keepalive=5 max-queue=2 address=" + port.address())
          .c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  // Past the keepalive: the first attempt was given up (after 5 s), a retry is under way.
  std::this_thread::sleep_for(std::chrono::milliseconds(7500));
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  gboolean up = TRUE;
  guint64 dropped = 0;
  g_object_get(pub, "connected", &up, "dropped", &dropped, nullptr);
  gst_object_unref(pub);
  EXPECT_FALSE(up);
  EXPECT_EQ(dropped, 2u);  // four documents into a queue of two, nothing sent
  const auto t0 = std::chrono::steady_clock::now();
  gst_harness_teardown(h);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.5);
}

// A broker that answers CONNECT with CONNACK, then reads a few bytes of the next packet (the
// first PUBLISH) and closes the connection in the middle of it, every time a client connects.
class CuttingBroker {
 public:
  CuttingBroker() {
    listener_ = loopback_listener(8, &port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~CuttingBroker() {
    stop_ = true;
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int cut() const { return cut_; }

 private:
  // Reads exactly n bytes, or fails (closed, or 5 s of silence).
  static bool read_n(int fd, unsigned char* buf, size_t n) {
    for (size_t got = 0; got < n;) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return false;
      const ssize_t r = recv(fd, buf + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      // CONNECT: type byte, remaining length (MQTT's base-128 varint), that many bytes.
      unsigned char b = 0;
      size_t remaining = 0;
      bool ok = read_n(fd, &b, 1) && (b >> 4) == 1;
      for (int shift = 0; ok; shift += 7) {
        ok = read_n(fd, &b, 1);
        remaining |= static_cast<size_t>(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
      }
      std::vector<unsigned char> body(remaining);
      ok = ok && read_n(fd, body.data(), remaining);
      const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
      ok = ok && send(fd, connack, sizeof connack, MSG_NOSIGNAL) == sizeof connack;
      unsigned char head[6];
      if (ok && read_n(fd, head, sizeof head) && (head[0] >> 4) == 3) ++cut_;  // a PUBLISH
      close(fd);
    }
  }
  int listener_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> cut_{0};
  std::thread thread_;
};

// A broker that drops the connection in the middle of every message: the element notices,
// reconnects (libmosquitto's back-off), never holds a push or the stop, and counts what it
// lost instead of losing it silently.
TEST(Publish, BrokerCuttingMessagesNeverStallsOrCrashes) {
  CuttingBroker broker;
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish topic=cams/cut max-queue=4 address=" + broker.address()).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  double slowest = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 60 || (broker.cut() < 2 &&
                             std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
       ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    slowest = std::max(
        slowest, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_LT(slowest, 0.2) << "a push waited on the broker";
  EXPECT_GE(broker.cut(), 2) << "the element did not reconnect after the first cut";
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  guint64 dropped = 0;
  g_object_get(pub, "dropped", &dropped, nullptr);
  gst_object_unref(pub);
  EXPECT_GT(dropped, 0u) << "documents pushed while the broker was gone vanished uncounted";
  const auto t0 = std::chrono::steady_clock::now();
  gst_harness_teardown(h);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.5);
}

// method=file appends one JSON line per frame (a second run adds to the first), the same
// document as to MQTT; a location that cannot be opened is a RESOURCE error naming it.
TEST(Publish, FileMethodAppendsOneLinePerFrame) {
  const std::string path = testing::temp_dir() + "/published.jsonl";
  for (int run = 0; run < 2; ++run) {
    GstHarness* h = gst_harness_new_parse(
        ("autoassignpublish method=file source=door location=" + path).c_str());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(gst_harness_push(h, numbered_frame(10 * run + i)), GST_FLOW_OK);
      gst_buffer_unref(gst_harness_pull(h));
    }
    gst_harness_push_event(h, gst_event_new_eos());
    gst_harness_teardown(h);
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_EQ(frame_numbers(lines), (std::vector<int>{0, 1, 2, 3, 10, 11, 12, 13}));
  ASSERT_FALSE(lines.empty());
  const auto doc = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(doc.at("source"), "door");
  EXPECT_EQ(doc.at("resolution").at("width"), 160);

  const std::string bad = testing::temp_dir() + "/no/such/dir/out.jsonl";
  GError* e = first_error(
      "videotestsrc num-buffers=2 ! autoassignpublish method=file location=" + bad + " ! fakesink");
  ASSERT_TRUE(e) << "no error";
  EXPECT_TRUE(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
  EXPECT_NE(std::string(e->message).find(bad), std::string::npos) << e->message;
  g_error_free(e);
}

// A topic no broker accepts for publishing is refused when set, naming it, and the topic stays
// what it was (issue 26: topic='probe/#' ran to exit 0 with every document silently lost).
TEST(Publish, InvalidTopicsAreRefusedWhenSet) {
  GstElement* e = gst_element_factory_make("autoassignpublish", nullptr);
  g_object_set(e, "topic", "cams/front", nullptr);
  for (const std::string& bad :
       {std::string("probe/#"), std::string("a/+/b"), std::string(""), std::string(70000, 't')}) {
    g_object_set(e, "topic", bad.c_str(), nullptr);
    gchar* topic = nullptr;
    g_object_get(e, "topic", &topic, nullptr);
    EXPECT_STREQ(topic, "cams/front") << bad.substr(0, 20);
    g_free(topic);
  }
  gst_object_unref(e);
  EXPECT_EQ(mqtt_publish_topic_problem("cams/front"), "");
  EXPECT_NE(mqtt_publish_topic_problem("probe/#").find("'probe/#' holds a wildcard"),
            std::string::npos);
  EXPECT_NE(mqtt_publish_topic_problem(std::string(70000, 't')).find("at most 65535 bytes"),
            std::string::npos);
  EXPECT_NE(mqtt_publish_topic_problem("").find("cannot be empty"), std::string::npos);
  EXPECT_NE(mqtt_publish_topic_problem("a\xff").find("UTF-8"), std::string::npos);
}

}  // namespace
}  // namespace autoassign
