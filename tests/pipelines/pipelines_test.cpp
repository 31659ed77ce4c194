// SPDX-License-Identifier: MIT
// The pipelines of pipelines/, run as users run them, against real components on 127.0.0.1:
// an RTSP test camera (gst-rtsp-server, in this process) serving H.264 of a real WIDER FACE image
// sequence, the autoassign-cameras program (one and four cameras, a camera that drops and
// comes back, one that never does), autoassign-rtsp-server pulled by an rtspsrc client, a
// short soak with resident memory watched, and every recipe script.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string temp_dir() {
  char tmpl[] = "/tmp/autoassign-pipelines-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A child process with stdout and stderr captured to files.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& dir) {
    out_ = dir + "/stdout-" + std::to_string(counter_) + ".txt";
    err_ = dir + "/stderr-" + std::to_string(counter_++) + ".txt";
    pid_ = fork();
    if (pid_ == 0) {
      const int o = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0 && !done_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Exit status, or -1 if it did not end within `seconds` (then it is killed).
  int wait(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        done_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    done_ = true;
    return -1;
  }
  void signal(int sig) { kill(pid_, sig); }
  int pid() const { return pid_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  bool done_ = false;
  std::string out_, err_;
};

// The RTSP test camera: rtsp://127.0.0.1:PORT/cam, H.264 of WIDER FACE val images (a looping
// slideshow at 10 fps, 640x360), one shared media for every client. Its own main loop thread,
// so it can be stopped and started again on the same port while a client is connected.
class TestCamera {
 public:
  TestCamera(int port, const std::string& images_dir, int width = 640, int height = 360)
      : port_(port) {
    launch_ = "( multifilesrc location=" + images_dir +
              "/img%03d.jpg index=0 loop=true caps=image/jpeg,framerate=10/1 ! jpegdec ! "
              "videoconvert ! videoscale add-borders=true ! video/x-raw,width=" +
              std::to_string(width) + ",height=" + std::to_string(height) +
              ",pixel-aspect-ratio=1/1,format=I420 ! "
              "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! "
              "rtph264pay name=pay0 pt=96 config-interval=1 )";
    context_ = g_main_context_new();
    loop_ = g_main_loop_new(context_, FALSE);
    thread_ = std::thread([this] {
      g_main_context_push_thread_default(context_);
      g_main_loop_run(loop_);
      g_main_context_pop_thread_default(context_);
    });
    start();
  }
  ~TestCamera() {
    stop();
    g_main_loop_quit(loop_);
    thread_.join();
    g_main_loop_unref(loop_);
    g_main_context_unref(context_);
  }
  std::string url() const { return "rtsp://127.0.0.1:" + std::to_string(port_) + "/cam"; }
  void start() {
    server_ = gst_rtsp_server_new();
    gst_rtsp_server_set_address(server_, "127.0.0.1");
    gst_rtsp_server_set_service(server_, std::to_string(port_).c_str());
    GstRTSPMediaFactory* f = gst_rtsp_media_factory_new();
    gst_rtsp_media_factory_set_launch(f, launch_.c_str());
    gst_rtsp_media_factory_set_shared(f, TRUE);
    GstRTSPMountPoints* mounts = gst_rtsp_server_get_mount_points(server_);
    gst_rtsp_mount_points_add_factory(mounts, "/cam", f);
    g_object_unref(mounts);
    source_ = gst_rtsp_server_attach(server_, context_);
    ASSERT_NE(source_, 0u) << "cannot listen on 127.0.0.1:" << port_;
  }
  // The camera goes away: every client connection closed, the port no longer listening.
  void stop() {
    if (!server_) return;
    gst_rtsp_server_client_filter(
        server_,
        [](GstRTSPServer*, GstRTSPClient* c, gpointer) {
          gst_rtsp_client_close(c);
          return GST_RTSP_FILTER_REMOVE;
        },
        nullptr);
    GSource* s = g_main_context_find_source_by_id(context_, source_);
    if (s) g_source_destroy(s);
    g_object_unref(server_);
    server_ = nullptr;
  }

 private:
  int port_;
  std::string launch_;
  GMainContext* context_;
  GMainLoop* loop_;
  std::thread thread_;
  GstRTSPServer* server_ = nullptr;
  guint source_ = 0;
};

struct Frames {
  int lines = 0, with_faces = 0;
  bool well_formed = true;
  std::string problem;
  std::vector<int> widths;  // each well-formed line's resolution width, in order
};

Frames read_jsonl(const std::string& path) {
  Frames f;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    ++f.lines;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("timestamp") || !j.contains("resolution") ||
        !j.contains("objects") || !j["objects"].is_array()) {
      f.well_formed = false;
      f.problem = line;
      continue;
    }
    f.widths.push_back(j["resolution"].value("width", 0));
    bool face = false;
    for (const auto& o : j["objects"]) {
      if (!o.contains("detection") || !o["detection"].contains("bounding_box")) {
        f.well_formed = false;
        f.problem = line;
      }
      face |= o.value("roi_type", "") == "face";
    }
    f.with_faces += face ? 1 : 0;
  }
  return f;
}

long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kb = 0;
      in >> kb;
      return kb;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

class Pipelines : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gst_init(nullptr, nullptr);
    data_ = env("AUTOASSIGN_DATA");
    model_ = env("AUTOASSIGN_MODEL");
    images_ = temp_dir();
    // Twenty val images with faces, numbered for multifilesrc (links, not copies).
    std::vector<fs::path> files;
    const fs::path val = fs::path(data_) / "widerface/WIDER_val/images/19--Couple";
    if (fs::is_directory(val)) {
      for (const auto& e : fs::directory_iterator(val)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < files.size() && i < 20; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/img%03zu.jpg", i);
      fs::create_symlink(files[i], images_ + name);
    }
  }
  void SetUp() override {
    if (!fs::exists(model_)) GTEST_FAIL() << "shipped model not found: " << model_;
    if (!fs::exists(images_ + "/img000.jpg")) GTEST_FAIL() << "no WIDER images under " << data_;
    dir_ = temp_dir();
  }
  std::vector<std::string> cameras_cmd(std::vector<std::string> extra) {
    std::vector<std::string> cmd = {
        env("AUTOASSIGN_CAMERAS"), "--model", model_, "--output", dir_, "--threads", "1"};
    cmd.insert(cmd.end(), extra.begin(), extra.end());
    return cmd;
  }
  // A token file holding `token` (the token is never on a command line).
  std::string token_file(const std::string& token) const {
    const std::string path = dir_ + "/token";
    std::ofstream(path) << token << "\n";
    return path;
  }
  std::string write_file(const std::string& name, const std::string& text) const {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  static inline std::string data_, model_, images_;
  std::string dir_;
};

TEST_F(Pipelines, RtspCameraToJsonLines) {
  TestCamera camera(free_port(), images_);
  Process p(cameras_cmd({"--duration", "8", camera.url()}), dir_);
  ASSERT_EQ(p.wait(60), 0) << p.err();
  const Frames f = read_jsonl(dir_ + "/camera-0.jsonl");
  EXPECT_TRUE(f.well_formed) << f.problem;
  EXPECT_GE(f.lines, 20) << p.err();  // ~10 fps for several seconds
  EXPECT_GE(f.with_faces, f.lines / 2) << "frames with a face, of " << f.lines;
  // Each object names its source (the camera URL), as gvametaconvert's "source".
  std::ifstream in(dir_ + "/camera-0.jsonl");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(nlohmann::json::parse(line).value("source", ""), camera.url());
}

// The service's config file (issue 25): every option as a field, equal in effect to the flags
// (both resolve to the same settings, printed by --print-settings), the command line on top,
// and a real run from a config alone stopped by SIGTERM as systemd stops it.
TEST_F(Pipelines, CamerasConfigFileEqualsFlags) {
  const std::string cameras = env("AUTOASSIGN_CAMERAS");
  const nlohmann::json config = {{"model", model_},
                                 {"output", dir_},
                                 {"threads", 1},
                                 {"threshold", 0.4},
                                 {"precision", "fp32"},
                                 {"drop_when_busy", true},
                                 {"track", true},
                                 {"mqtt", "127.0.0.1:1883"},
                                 {"topic", "cams/a"},
                                 {"retries", 3},
                                 {"retry_max_seconds", 5},
                                 {"stall_seconds", 4},
                                 {"duration", 7.5},
                                 {"max_streams", 4},
                                 {"http", "127.0.0.1:0"},
                                 {"http_token_file", dir_ + "/token"},
                                 {"sources", {"test", "rtsp://10.0.0.5/s"}}};
  const std::string path = write_file("cameras.json", config.dump(2));
  Process from_file({cameras, "--config", path, "--print-settings"}, dir_);
  ASSERT_EQ(from_file.wait(30), 0) << from_file.err();
  Process from_flags({cameras,
                      "--model",
                      model_,
                      "--output",
                      dir_,
                      "--threads",
                      "1",
                      "--threshold",
                      "0.4",
                      "--precision",
                      "fp32",
                      "--drop-when-busy",
                      "--track",
                      "--mqtt",
                      "127.0.0.1:1883",
                      "--topic",
                      "cams/a",
                      "--retries",
                      "3",
                      "--retry-max-seconds",
                      "5",
                      "--stall-seconds",
                      "4",
                      "--duration",
                      "7.5",
                      "--max-streams",
                      "4",
                      "--http",
                      "127.0.0.1:0",
                      "--http-token-file",
                      dir_ + "/token",
                      "test",
                      "rtsp://10.0.0.5/s",
                      "--print-settings"},
                     dir_);
  ASSERT_EQ(from_flags.wait(30), 0) << from_flags.err();
  const auto a = nlohmann::json::parse(from_file.out()),
             b = nlohmann::json::parse(from_flags.out());
  EXPECT_EQ(a, b) << from_file.out() << "\n" << from_flags.out();
  // The settings printed are the file's, field for field.
  for (const auto& [key, value] : config.items()) EXPECT_EQ(a[key], value) << key;
  // The command line overrides the file; its sources come after the file's.
  Process both({cameras, "--config", path, "--threshold", "0.7", "/dev/video9", "--print-settings"},
               dir_);
  ASSERT_EQ(both.wait(30), 0) << both.err();
  const auto c = nlohmann::json::parse(both.out());
  EXPECT_EQ(c["threshold"], 0.7);
  EXPECT_EQ(c["sources"], nlohmann::json({"test", "rtsp://10.0.0.5/s", "/dev/video9"}));

  // A run from a config file alone, on a real RTSP camera, stopped by SIGTERM.
  TestCamera camera(free_port(), images_);
  const std::string run = write_file("run.json", nlohmann::json({{"model", model_},
                                                                 {"output", dir_ + "/out"},
                                                                 {"threads", 1},
                                                                 {"sources", {camera.url()}}})
                                                     .dump());
  Process p({cameras, "--config", run}, dir_);
  const std::string file = dir_ + "/out/camera-0.jsonl";
  for (int i = 0; i < 300 && read_jsonl(file).lines < 10; ++i) g_usleep(100000);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  const Frames f = read_jsonl(file);
  EXPECT_GE(f.lines, 10) << p.err();
  EXPECT_TRUE(f.well_formed) << f.problem;
  EXPECT_GE(f.with_faces, f.lines / 2);
}

TEST_F(Pipelines, CamerasConfigErrorsNameTheField) {
  const std::string cameras = env("AUTOASSIGN_CAMERAS");
  auto expect_refused = [&](const std::string& path, const std::string& words) {
    Process p({cameras, "--config", path, "--print-settings"}, dir_);
    EXPECT_EQ(p.wait(30), 2) << path;
    EXPECT_NE(p.err().find(words), std::string::npos) << "wanted: " << words << "\n" << p.err();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"threshold": 2})", "field 'threshold' must be in [0, 1], got 2"},
      {R"({"thresold": 0.5})", "field 'thresold': no such option"},
      {R"({"track": "yes"})", "field 'track' must be true or false"},
      {R"({"sources": "rtsp://h/s"})", "field 'sources' must be an array of strings"},
      {R"({"sources": ["rtsp://h/s", 5]})", "field 'sources' must be an array of strings"},
      {R"({"threads": 1.5})", "field 'threads': not a number: '1.5'"},
      {R"({"max_streams": 0})", "field 'max_streams' must be in [1, 1024], got 0"},
      {R"({"model": null})", "field 'model' must be a string or a number"},
      {R"({"http_token": "s3cret"})", "field 'http_token': no such option"},
      {R"({"config": "other.json"})", "field 'config': a config file cannot name another"},
      {R"([1, 2])", "not a JSON object of options"},
      {R"({"threshold": 0.5, "threshold": 0.6})", "repeats the key 'threshold'"},
      {R"({"a": {"b": {"c": 1}}})", "nests deeper than 2 levels"},
      {R"({"threshold": 0.5)", "not valid JSON"},
  };
  int n = 0;
  for (const auto& [text, words] : cases) {
    expect_refused(write_file("bad-" + std::to_string(n++) + ".json", text), words);
  }
  expect_refused(dir_ + "/missing.json", "no such file");
  expect_refused(dir_, "directory");
  const std::string fifo = dir_ + "/fifo.json";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_refused(fifo, "FIFO");
}

TEST_F(Pipelines, FourCamerasShareOneModel) {
  TestCamera camera(free_port(), images_);
  Process p(
      cameras_cmd({"--duration", "10", camera.url(), camera.url(), camera.url(), camera.url()}),
      dir_);
  ASSERT_EQ(p.wait(90), 0) << p.err();
  EXPECT_NE(p.err().find("4 camera(s) starting"), std::string::npos) << p.err();
  EXPECT_NE(p.err().find("models loaded: 1\n"), std::string::npos) << p.err();  // at the end
  for (int i = 0; i < 4; ++i) {
    const Frames f = read_jsonl(dir_ + "/camera-" + std::to_string(i) + ".jsonl");
    EXPECT_TRUE(f.well_formed) << f.problem;
    EXPECT_GE(f.lines, 10) << "camera " << i << "\n" << p.err();
    EXPECT_GT(f.with_faces, 0) << "camera " << i;
  }
}

TEST_F(Pipelines, CameraThatDropsIsReconnected) {
  const int port = free_port();
  TestCamera camera(port, images_);
  Process p(cameras_cmd({"--duration", "30", "--stall-seconds", "3", "--retry-max-seconds", "2",
                         camera.url()}),
            dir_);
  const std::string file = dir_ + "/camera-0.jsonl";
  // Running: frames arrive.
  for (int i = 0; i < 200 && read_jsonl(file).lines < 10; ++i) g_usleep(100000);
  ASSERT_GE(read_jsonl(file).lines, 10) << p.err();
  camera.stop();  // the camera drops
  g_usleep(5 * G_USEC_PER_SEC);
  const int during = read_jsonl(file).lines;
  camera.start();  // and comes back on the same address
  // The program notices, reconnects, and frames flow again into the same file.
  bool resumed = false;
  for (int i = 0; i < 200 && !resumed; ++i) {
    g_usleep(100000);
    resumed = read_jsonl(file).lines >= during + 10;
  }
  EXPECT_TRUE(resumed) << p.err();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_NE(p.err().find("reconnecting"), std::string::npos) << p.err();
  EXPECT_TRUE(read_jsonl(file).well_formed);
}

TEST_F(Pipelines, CameraThatNeverReturnsEndsWithAClearError) {
  const int port = free_port();  // nothing listens here
  Process p(cameras_cmd({"--retries", "2", "--retry-max-seconds", "1",
                         "rtsp://127.0.0.1:" + std::to_string(port) + "/cam"}),
            dir_);
  EXPECT_EQ(p.wait(60), 1) << p.err();
  EXPECT_NE(p.err().find("giving up after 3 attempt(s)"), std::string::npos) << p.err();
  EXPECT_NE(p.out().find("gave up"), std::string::npos) << p.out();
}

// A camera URL with credentials: they never reach the JSON lines, the logs or the summary.
TEST_F(Pipelines, CameraCredentialsAreRedactedEverywhere) {
  TestCamera camera(free_port(), images_);
  std::string url = camera.url();
  url.replace(url.find("://") + 3, 0, "admin:s3cret@");
  Process p(cameras_cmd({"--duration", "6", url}), dir_);
  ASSERT_EQ(p.wait(60), 0) << p.err();
  std::ifstream in(dir_ + "/camera-0.jsonl");
  const std::string lines((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.find("s3cret"), std::string::npos);
  EXPECT_NE(lines.find("rtsp://***@127.0.0.1"), std::string::npos);
  EXPECT_EQ(p.err().find("s3cret"), std::string::npos) << p.err();
  EXPECT_EQ(p.out().find("s3cret"), std::string::npos) << p.out();
  EXPECT_NE(p.out().find("rtsp://***@"), std::string::npos) << p.out();
}

// An output that cannot be written is given up on at once (it was retried forever); a clip
// given as a file:// URI is not a live camera: it plays once and the program ends.
TEST_F(Pipelines, UnwritableOutputAndClipUris) {
  const std::string blocker = dir_ + "/not-a-folder";
  std::ofstream(blocker) << "a file where the output folder should be";
  Process bad({env("AUTOASSIGN_CAMERAS"), "--model", model_, "--output", blocker, "test"}, dir_);
  EXPECT_EQ(bad.wait(60), 1) << bad.err();
  EXPECT_NE(bad.err().find("the output cannot be written"), std::string::npos) << bad.err();
  const std::string clip = dir_ + "/clip.mp4";
  ASSERT_EQ(std::system(("gst-launch-1.0 -q videotestsrc num-buffers=15 ! "
                         "video/x-raw,width=320,height=240,framerate=10/1 ! x264enc ! mp4mux ! "
                         "filesink location=" +
                         clip)
                            .c_str()),
            0);
  Process once(cameras_cmd({"file://" + clip}), dir_);
  EXPECT_EQ(once.wait(60), 0) << once.err();
  EXPECT_EQ(read_jsonl(dir_ + "/camera-0.jsonl").lines, 15) << once.err();
  EXPECT_EQ(once.err().find("reconnecting"), std::string::npos) << once.err();
}

// An rtspsrc client of autoassign-rtsp-server's annotated stream: depayloads, decodes and
// pulls up to `frames` samples, retrying while the server comes up (50 tries, 0.2 s apart).
// It stays attached and PLAYING until destroyed.
class AnnotatedClient {
 public:
  AnnotatedClient(int port, int frames) {
    const std::string desc = "rtspsrc location=rtsp://127.0.0.1:" + std::to_string(port) +
                             "/annotated latency=100 protocols=tcp ! rtph264depay ! h264parse ! "
                             "avdec_h264 ! videoconvert ! video/x-raw,format=RGB ! appsink "
                             "name=sink sync=false";
    for (int attempt = 0; attempt < 50 && decoded == 0; ++attempt) {
      g_usleep(200000);  // the server needs a moment to listen
      stop();
      client_ = gst_parse_launch(desc.c_str(), nullptr);
      if (!client_) return;
      sink_ = gst_bin_get_by_name(GST_BIN(client_), "sink");
      gst_element_set_state(client_, GST_STATE_PLAYING);
      for (int i = 0; i < frames; ++i) {
        GstSample* s = gst_app_sink_try_pull_sample(GST_APP_SINK(sink_), 10 * GST_SECOND);
        if (!s) break;
        GstVideoInfo* info = gst_video_info_new_from_caps(gst_sample_get_caps(s));
        width = info ? GST_VIDEO_INFO_WIDTH(info) : 0;
        if (info) gst_video_info_free(info);
        gst_sample_unref(s);
        ++decoded;
      }
    }
  }
  ~AnnotatedClient() { stop(); }
  AnnotatedClient(const AnnotatedClient&) = delete;
  AnnotatedClient& operator=(const AnnotatedClient&) = delete;

  int decoded = 0, width = 0;

 private:
  void stop() {
    if (!client_) return;
    gst_element_set_state(client_, GST_STATE_NULL);
    gst_object_unref(sink_);
    gst_object_unref(client_);
    client_ = sink_ = nullptr;
  }
  GstElement* client_ = nullptr;
  GstElement* sink_ = nullptr;
};

TEST_F(Pipelines, AnnotatedRestreamIsPlayable) {
  const int port = free_port();
  Process server({env("AUTOASSIGN_RTSP_SERVER"), "--model", model_, "--source", "test", "--port",
                  std::to_string(port)},
                 dir_);
  {
    AnnotatedClient client(port, 15);
    EXPECT_EQ(client.decoded, 15) << server.err();
    EXPECT_GT(client.width, 0);
  }
  server.signal(SIGINT);
  EXPECT_EQ(server.wait(20), 0) << server.err();
}

// Ctrl-C while a client is attached and frames flow: the server used to quit its main loop
// from a plain signal handler and died with SIGSEGV in about one exit in four (2 of 8 here).
// Eight exits in a row must each be status 0 after an orderly teardown.
TEST_F(Pipelines, RtspServerCtrlCWithClientAttachedExitsCleanly) {
  for (int round = 0; round < 8; ++round) {
    const int port = free_port();
    Process server({env("AUTOASSIGN_RTSP_SERVER"), "--model", model_, "--source", "test", "--port",
                    std::to_string(port)},
                   dir_);
    AnnotatedClient client(port, 3);
    ASSERT_GT(client.decoded, 0) << "round " << round << ": " << server.err();
    // The client stays attached and playing while the server is told to stop.
    server.signal(SIGINT);
    const int status = server.wait(30);
    EXPECT_EQ(status, 0) << "round " << round << ": " << server.err();
    EXPECT_NE(server.out().find("shutting down"), std::string::npos) << server.out();
    if (status != 0) break;
  }
}

// --help of each pipeline program: status 0, every line within 98 columns (the shared
// options' help is one long string, wrapped at spaces), and no word lost to the wrapping.
TEST_F(Pipelines, ProgramsHelpFitsNinetyEightColumns) {
  for (const char* program :
       {"AUTOASSIGN_CAMERAS", "AUTOASSIGN_RTSP_SERVER", "AUTOASSIGN_WIDER_FOLDER"}) {
    Process p({env(program), "--help"}, dir_);
    EXPECT_EQ(p.wait(30), 0) << program << "\n" << p.err();
    const std::string text = p.out() + p.err();
    std::istringstream lines(text);
    int n = 0;
    std::string words;
    for (std::string line; std::getline(lines, line); ++n) {
      EXPECT_LE(line.size(), 98u) << program << ": " << line;
      std::istringstream ws(line);
      for (std::string w; ws >> w;) words += w + " ";
    }
    EXPECT_GT(n, 5) << program;
    // The --precision help (written once for every program) arrives whole, word by word.
    EXPECT_NE(words.find("network arithmetic: auto (bf16 on CPUs with AMX or AVX512-BF16, fp32 "
                         "elsewhere), fp32, bf16, fp16 (CUDA); box decoding, scores and NMS stay "
                         "fp32"),
              std::string::npos)
        << program << "\n"
        << text;
  }
}

// The programs' numbers are checked whole and in range, and a source no GStreamer element
// handles is refused up front (issue 26: --port 99999 printed "serving ...:99999" while it
// listened on another port, --port -1 listened on 65535, --source foo://bar served 503s and
// printed nothing, --threshold nan was taken).
TEST_F(Pipelines, ProgramsRefuseBadNumbersPortsAndSources) {
  auto refused = [&](std::vector<std::string> argv, const std::string& message) {
    Process p(argv, dir_);
    EXPECT_EQ(p.wait(30), 2) << argv[1] << " " << argv.back() << "\n" << p.err();
    EXPECT_NE(p.err().find(message), std::string::npos) << p.err();
  };
  const std::string server = env("AUTOASSIGN_RTSP_SERVER"), cameras = env("AUTOASSIGN_CAMERAS");
  refused({server, "--model", model_, "--port", "99999"},
          "--port must be in [0, 65535], got 99999");
  refused({server, "--model", model_, "--port", "-1"}, "--port must be in [0, 65535], got -1");
  // Beyond 64 bits (std::stoll's own out_of_range once read "must be in stoll").
  refused({server, "--model", model_, "--port", "99999999999999999999"},
          "--port must be in [0, 65535], got 99999999999999999999");
  refused({server, "--model", model_, "--threshold", "1e999"},
          "--threshold must be in [0, 1], got 1e999");
  refused({server, "--model", model_, "--port", "80x"}, "--port: not a number: '80x'");
  refused({server, "--model", model_, "--source", "foo://bar"},
          "--source foo://bar: no installed GStreamer source handles 'foo://'");
  refused({server, "--model", model_, "--threshold", "nan"}, "--threshold: not a number: 'nan'");
  refused({cameras, "--model", model_, "--threshold", "1.5", "test"},
          "--threshold must be in [0, 1], got 1.5");
  refused({cameras, "--model", model_, "--stall-seconds", "0", "test"},
          "--stall-seconds must be in [1, 86400], got 0");
  refused({cameras, "--model", model_, "--max-streams", "1", "test", "test"},
          "2 sources, more than --max-streams 1");
  refused({cameras, "--model", model_, "--mqtt", "127.0.0.1:1883", "--topic", "cams/#", "test"},
          "--topic: 'cams/#' holds a wildcard");
  refused({cameras, "--model", model_, "--mqtt", "localhost:99999", "test"},
          "--mqtt must be HOST:PORT with a port in 1..65535, got 'localhost:99999'");
  // --port 0: the system picks one, and the line printed names the port it listens on.
  Process p({server, "--model", model_, "--port", "0"}, dir_);
  std::string out;
  for (int i = 0; i < 100 && out.find("serving") == std::string::npos; ++i) {
    g_usleep(100000);
    out = p.out();
  }
  const auto colon = out.find(":", out.find("rtsp://") + 7);
  ASSERT_NE(colon, std::string::npos) << out << p.err();
  const int port = std::atoi(out.c_str() + colon + 1);
  EXPECT_GT(port, 0) << out;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << "nothing on " << port;
  close(fd);
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(20), 0) << p.err();
}

TEST_F(Pipelines, SoakResidentMemoryStaysFlat) {
  // CI-sized: two cameras for 40 s. After a 10 s warm-up, the median resident size of the
  // last 8 one-second samples may exceed that of the first 8 by at most 32 MB. Allocator noise
  // moves RSS by +-15 MB here; leaking one 640x360 NV12 frame per frame at 2 x 10 fps would add
  // ~9 MB/s, over 150 MB in this window.
  TestCamera camera(free_port(), images_);
  Process p(cameras_cmd({"--duration", "40", camera.url(), camera.url()}), dir_);
  std::vector<long> samples;
  for (int i = 0; i < 38; ++i) {
    g_usleep(G_USEC_PER_SEC);
    if (i >= 10) samples.push_back(rss_kb(p.pid()));
  }
  ASSERT_EQ(p.wait(60), 0) << p.err();
  ASSERT_GE(samples.size(), 16u);
  auto median = [](std::vector<long> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const long first = median({samples.begin(), samples.begin() + 8});
  const long last = median({samples.end() - 8, samples.end()});
  std::printf("RSS median after warm-up %ld kB, at the end %ld kB\n", first, last);
  EXPECT_LT(last - first, 32 * 1024)
      << "resident memory grew from " << first << " to " << last << " kB";
  EXPECT_GE(read_jsonl(dir_ + "/camera-1.jsonl").lines, 100);
}

TEST_F(Pipelines, FileToFileRecipe) {
  const std::string scripts = env("AUTOASSIGN_PIPELINES");
  Process clip({"/bin/bash", scripts + "/make-clip.sh", dir_ + "/clip.mp4", "6"}, dir_);
  ASSERT_EQ(clip.wait(120), 0) << clip.err();
  Process run({"/bin/bash", scripts + "/file-to-file.sh", dir_ + "/clip.mp4", dir_ + "/out.mp4",
               dir_ + "/out.jsonl", model_},
              dir_);
  ASSERT_EQ(run.wait(300), 0) << run.err();
  const Frames f = read_jsonl(dir_ + "/out.jsonl");
  EXPECT_TRUE(f.well_formed) << f.problem;
  // 6 images at 2 per second at 30 fps: about 3 s of frames (videorate decides the last one's).
  EXPECT_GE(f.lines, 60);
  EXPECT_GT(f.with_faces, f.lines / 2);
  EXPECT_GT(fs::file_size(dir_ + "/out.mp4"), 10000u);
  // The summary counts the JSON lines: one per frame.
  EXPECT_NE(run.out().find("frames " + std::to_string(f.lines) + ","), std::string::npos)
      << run.out();
}

TEST_F(Pipelines, CameraToWindowRecipeWithATestSource) {
  setenv("NUM_BUFFERS", "30", 1);
  Process run({"/bin/bash", env("AUTOASSIGN_PIPELINES") + "/camera-to-window.sh", "test",
               "fakesink", model_},
              dir_);
  EXPECT_EQ(run.wait(120), 0) << run.err();
  unsetenv("NUM_BUFFERS");
  Process missing({"/bin/bash", env("AUTOASSIGN_PIPELINES") + "/camera-to-window.sh",
                   "/dev/video-none", "fakesink", model_},
                  dir_);
  EXPECT_EQ(missing.wait(30), 1);
  EXPECT_NE(missing.err().find("no camera at /dev/video-none"), std::string::npos);
}

TEST_F(Pipelines, RtspToJsonRecipe) {
  TestCamera camera(free_port(), images_);
  Process run({"/bin/bash", env("AUTOASSIGN_PIPELINES") + "/rtsp-to-json.sh", camera.url(), dir_,
               model_, "--duration", "5", "--threads", "1"},
              dir_);
  ASSERT_EQ(run.wait(60), 0) << run.err();
  const Frames f = read_jsonl(dir_ + "/camera-0.jsonl");
  EXPECT_GE(f.lines, 10);
  EXPECT_GT(f.with_faces, 0);
}

TEST_F(Pipelines, WiderFolderThroughTheElementEqualsTheCli) {
  // The same images through the element and through `autoassign detect`: the same library,
  // so `autoassign eval` gives the same AP for both prediction folders.
  const std::string images = data_ + "/widerface/WIDER_val/images/19--Couple";
  Process element({env("AUTOASSIGN_WIDER_FOLDER"), "--model", model_, "--images", images,
                   "--output", dir_ + "/element", "--threads", "2"},
                  dir_);
  ASSERT_EQ(element.wait(300), 0) << element.err();
  Process cli({env("AUTOASSIGN_CLI"), "detect", "--model", model_, "--input", images, "--format",
               "widerface", "-o", dir_ + "/cli", "--threshold", "0.02", "--max-detections", "1000",
               "--threads", "2"},
              dir_);
  ASSERT_EQ(cli.wait(300), 0) << cli.err();
  auto eval = [&](const std::string& preds) {
    Process e({env("AUTOASSIGN_CLI"), "eval", "--predictions", preds, "--widerface",
               data_ + "/widerface", "--json"},
              dir_);
    EXPECT_EQ(e.wait(120), 0) << e.err();
    return nlohmann::json::parse(e.out(), nullptr, false);
  };
  const auto a = eval(dir_ + "/element"), b = eval(dir_ + "/cli");
  ASSERT_FALSE(a.is_discarded());
  ASSERT_FALSE(b.is_discarded());
  for (const char* s : {"easy", "medium", "hard"}) {
    EXPECT_NEAR(a[s]["ap"].get<double>(), b[s]["ap"].get<double>(), 1e-9) << s;
  }
  EXPECT_GT(a["easy"]["ap"].get<double>(), 0.3);
}

// Hostile inputs to `autoassign detect` and `info` (issue 26): a truncated JPEG stopped a folder
// run (later files never processed), a PNG header claiming 60000x60000 stopped it with an
// OpenCV assertion naming no file, a symlink loop ended it with no output, a FIFO hung `info`
// and was "input not found" to `detect`, --threshold nan was taken for the default. Now each
// bad file is named and skipped, the good ones are processed, the exit status says it.
TEST_F(Pipelines, CliNamesAndSkipsBadInputsAndGoesOn) {
  const std::string in = dir_ + "/in";
  fs::create_directories(in);
  // The suite's first two val images (img000, img001: links, so these copy the files).
  fs::copy_file(images_ + "/img000.jpg", in + "/a.jpg");
  fs::copy_file(images_ + "/img001.jpg", in + "/z.jpg");
  std::ifstream real0(in + "/a.jpg", std::ios::binary);
  const std::string jpeg((std::istreambuf_iterator<char>(real0)), std::istreambuf_iterator<char>());
  std::ofstream(in + "/b-truncated.jpg", std::ios::binary) << jpeg.substr(0, jpeg.size() / 3);
  std::ofstream(in + "/c-text.jpg") << "not an image\n";
  {  // A valid PNG header claiming 60000 x 60000 (IHDR, an empty IDAT, IEND; CRCs correct).
    const std::string hex =
        "89504e470d0a1a0a0000000d494844520000ea600000ea6008020000000fb0e215000000004944415435af061e"
        "0000000049454e44ae426082";
    std::string png;
    for (size_t k = 0; k < hex.size(); k += 2) {
      png += static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16));
    }
    std::ofstream(in + "/d-huge.png", std::ios::binary) << png;
  }
  fs::create_symlink(in + "/e-loop.jpg", in + "/e-loop.jpg");
  ASSERT_EQ(mkfifo((in + "/f-fifo.jpg").c_str(), 0600), 0);
  Process run({env("AUTOASSIGN_CLI"), "detect", "--model", model_, "--input", in, "-o",
               dir_ + "/out.jsonl", "--threads", "2"},
              dir_);
  EXPECT_EQ(run.wait(120), 1) << run.err();
  const std::string err = run.err();
  for (const char* name :
       {"b-truncated.jpg", "c-text.jpg", "d-huge.png", "e-loop.jpg", "f-fifo.jpg"}) {
    EXPECT_NE(err.find(std::string("skipped ") + in + "/" + name), std::string::npos)
        << name << "\n"
        << err;
  }
  EXPECT_NE(err.find("5 input files skipped"), std::string::npos) << err;
  // Each for its own reason.
  for (const char* reason : {"b-truncated.jpg: truncated JPEG (no end-of-image marker)",
                             "c-text.jpg: not a JPEG, PNG or BMP file",
                             "d-huge.png: png of 60000x60000, above the limit of 100 megapixels",
                             "e-loop.jpg: Too many levels of symbolic links",
                             "f-fifo.jpg: is a FIFO (named pipe), not a regular file"}) {
    EXPECT_NE(err.find(reason), std::string::npos) << reason << "\n" << err;
  }
  // Both real images, the one after the bad files too, were detected.
  std::ifstream lines(dir_ + "/out.jsonl");
  std::vector<std::string> images;
  for (std::string line; std::getline(lines, line);) {
    images.push_back(nlohmann::json::parse(line)["image"].get<std::string>());
  }
  EXPECT_EQ(images, (std::vector<std::string>{in + "/a.jpg", in + "/z.jpg"}));
  // A FIFO as the model or the input: refused at once, named for what it is.
  Process info({env("AUTOASSIGN_CLI"), "info", in + "/f-fifo.jpg"}, dir_);
  EXPECT_EQ(info.wait(30), 2) << "info on a FIFO did not end: " << info.err();
  EXPECT_NE(info.err().find("is a FIFO (named pipe), not a regular file"), std::string::npos)
      << info.err();
  Process fifo_in(
      {env("AUTOASSIGN_CLI"), "detect", "--model", model_, "--input", in + "/f-fifo.jpg"}, dir_);
  EXPECT_EQ(fifo_in.wait(60), 1);
  EXPECT_NE(fifo_in.err().find("is a FIFO (named pipe)"), std::string::npos) << fifo_in.err();
  Process nan({env("AUTOASSIGN_CLI"), "detect", "--model", model_, "--input", in + "/a.jpg",
               "--threshold", "nan"},
              dir_);
  EXPECT_EQ(nan.wait(60), 1);
  EXPECT_NE(nan.err().find("threshold must be in [0, 1], got nan"), std::string::npos) << nan.err();
}

// A WIDER tree assembled from links to event folders (how the full train split is put
// together here): `detect` once skipped every linked folder without a word and wrote 1,455 of
// 3,048 images. Links are followed now; a folder reached twice (here a link back up the tree)
// is searched once, and the second way in is named.
TEST_F(Pipelines, CliFollowsFolderLinksOnce) {
  const std::string store = dir_ + "/store", in = dir_ + "/tree";
  fs::create_directories(store + "/19--Couple");
  fs::create_directories(in + "/4--Dancing");
  fs::copy_file(images_ + "/img000.jpg", store + "/19--Couple/x.jpg");
  fs::copy_file(images_ + "/img001.jpg", in + "/4--Dancing/y.jpg");
  fs::create_directory_symlink(store + "/19--Couple", in + "/19--Couple");
  fs::create_directory_symlink(in, in + "/4--Dancing/up");  // a loop
  Process run({env("AUTOASSIGN_CLI"), "detect", "--model", model_, "--input", in, "--format",
               "widerface", "-o", dir_ + "/preds", "--threads", "2"},
              dir_);
  EXPECT_EQ(run.wait(120), 1) << run.err();
  const std::string err = run.err();
  EXPECT_TRUE(fs::is_regular_file(dir_ + "/preds/19--Couple/x.txt")) << err;
  EXPECT_TRUE(fs::is_regular_file(dir_ + "/preds/4--Dancing/y.txt")) << err;
  EXPECT_FALSE(fs::exists(dir_ + "/preds/4--Dancing/up")) << err;
  EXPECT_NE(err.find("skipped " + in + "/4--Dancing/up: a link to a folder already searched (" +
                     fs::weakly_canonical(in).string() + ")"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("1 input files skipped"), std::string::npos) << err;
}

// The test camera in a process of its own (this binary with --serve-camera), so it can be
// SIGKILLed (a camera that dies) or SIGSTOPped (a half-open connection: TCP up, no data).
std::unique_ptr<Process> camera_process(int port, const std::string& images, const char* size,
                                        const std::string& dir) {
  std::vector<char> self(4096);
  const ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
  return std::make_unique<Process>(
      std::vector<std::string>{std::string(self.data(), n > 0 ? n : 0), "--serve-camera",
                               std::to_string(port), images, size},
      dir);
}

int count_entries(const std::string& path) {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(path, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
  return n;
}

// A process's resident memory, open file descriptors and threads, for soaks that repeat an
// action and check that none of the three grows with it.
struct Resources {
  long rss_kb = 0;
  int fds = 0, threads = 0;
};

Resources resources_of(int pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  return {rss_kb(pid), count_entries(proc + "/fd"), count_entries(proc + "/task")};
}

// What a process holds, for a failure message: its threads by name (GStreamer names them
// after the element or task) and its descriptors by target, with counts.
std::string holdings_of(int pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::map<std::string, int> threads, fds;
  std::error_code ec;
  for (auto it = fs::directory_iterator(proc + "/task", ec); !ec && it != fs::directory_iterator();
       ++it) {
    std::ifstream in(it->path() / "comm");
    std::string name;
    std::getline(in, name);
    ++threads[name];
  }
  for (auto it = fs::directory_iterator(proc + "/fd", ec); !ec && it != fs::directory_iterator();
       ++it) {
    std::string target = fs::read_symlink(it->path(), ec).string();
    // "socket:[12345]" and "anon_inode:[eventfd]": the kind, not the inode number.
    if (target.rfind("socket:", 0) == 0) target = "socket";
    if (target.rfind("pipe:", 0) == 0) target = "pipe";
    ++fds[target];
  }
  std::string out = "threads:";
  for (const auto& [name, n] : threads) out += " " + name + " x" + std::to_string(n);
  out += "\nfds:";
  for (const auto& [target, n] : fds) out += " " + target + " x" + std::to_string(n);
  return out;
}

// Resources once the process has settled: while a connection is being set up it holds a few
// more fds and threads than while it streams (measured: 19 fds / 11 threads for a moment, then
// 17 / 10), and GLib's shared thread pool keeps idle threads for a while. Sampled every 250 ms
// until fds and threads are within 2 of `baseline` or `seconds` pass; the last sample is
// returned, so a leak, which stays, still fails the check.
Resources settled_resources(int pid, const Resources& baseline, double seconds) {
  Resources r = resources_of(pid);
  for (int i = 0; i < seconds * 4; ++i) {
    if (r.fds <= baseline.fds + 2 && r.threads <= baseline.threads + 2) break;
    g_usleep(250000);
    r = resources_of(pid);
  }
  return r;
}

// Takes the process's settled resources (up to 20 s), prints both snapshots ("after 10 / 100
// reconnections: ...") and checks the growth from `before`: resident memory under
// `rss_bound_kb` (0: not checked here), fds and threads within 2, naming what it holds if they
// are not.
void expect_flat(const Resources& before, int pid, long rss_bound_kb, const std::string& what) {
  const Resources after = settled_resources(pid, before, 20);
  std::printf("after %s: RSS %ld / %ld kB, fds %d / %d, threads %d / %d\n", what.c_str(),
              before.rss_kb, after.rss_kb, before.fds, after.fds, before.threads, after.threads);
  if (rss_bound_kb > 0) {
    EXPECT_LT(after.rss_kb - before.rss_kb, rss_bound_kb)
        << "resident memory grew by " << (after.rss_kb - before.rss_kb) << " kB";
  }
  EXPECT_LE(after.fds, before.fds + 2) << holdings_of(pid);
  EXPECT_LE(after.threads, before.threads + 2) << holdings_of(pid);
}

// RTSP chaos against autoassign-cameras: a camera SIGKILLed mid-stream, a half-open connection
// (camera SIGSTOPped), a resolution change, then 50 drop/reconnect cycles with resident
// memory, open file descriptors and threads flat.
TEST_F(Pipelines, RtspChaos) {
  const int port = free_port();
  const std::string url = "rtsp://127.0.0.1:" + std::to_string(port) + "/cam";
  auto cam = camera_process(port, images_, "640x360", dir_);
  // As the packaged service runs it: MALLOC_ARENA_MAX=2 (see the bound at the end).
  setenv("MALLOC_ARENA_MAX", "2", 1);
  Process p(cameras_cmd({"--stall-seconds", "3", "--retry-max-seconds", "1", url}), dir_);
  unsetenv("MALLOC_ARENA_MAX");
  const std::string file = dir_ + "/camera-0.jsonl";
  auto wait_lines = [&](int more, double seconds) {
    const int target = read_jsonl(file).lines + more;
    for (int i = 0; i < seconds * 10; ++i) {
      if (read_jsonl(file).lines >= target) return true;
      g_usleep(100000);
    }
    return false;
  };
  ASSERT_TRUE(wait_lines(10, 60)) << p.err();
  // 1. The camera process dies (SIGKILL): no goodbye on the connection.
  cam->signal(SIGKILL);
  cam->wait(5);
  g_usleep(2 * G_USEC_PER_SEC);
  cam = camera_process(port, images_, "640x360", dir_);
  EXPECT_TRUE(wait_lines(10, 60)) << "no frames after the camera was killed and restarted\n"
                                  << p.err();
  // 2. Half-open: the camera hangs (SIGSTOP), the connection stays up and silent; the stall
  // watchdog notices, and once the camera wakes frames flow again.
  cam->signal(SIGSTOP);
  g_usleep(6 * G_USEC_PER_SEC);
  EXPECT_NE(p.err().find("no frame for 3 s"), std::string::npos) << p.err();
  cam->signal(SIGCONT);
  EXPECT_TRUE(wait_lines(10, 60)) << "no frames after a half-open connection\n" << p.err();
  // Lines go on for a second or so after a camera dies (frames queued in the jitter buffer and
  // ahead of the model; on a slow machine more), so a check on the new connection first waits
  // for the program to report the drop: only lines after that come from the new connection.
  auto drops = [&] {
    const std::string err = p.err();
    int n = 0;
    for (size_t at = err.find("reconnecting in"); at != std::string::npos;
         at = err.find("reconnecting in", at + 1)) {
      ++n;
    }
    return n;
  };
  // Kills the camera and waits up to 30 s for the program to report the drop.
  auto kill_camera = [&] {
    const int dropped = drops();
    cam->signal(SIGKILL);
    cam->wait(5);
    for (int i = 0; i < 300 && drops() == dropped; ++i) g_usleep(100000);
    return drops() > dropped;
  };
  // 3. The camera comes back at another resolution: the lines say so. Once the first 320-wide
  // line arrives, every later line is 320 wide (the old connection's queued frames are all out).
  ASSERT_TRUE(kill_camera()) << "the drop went unnoticed\n" << p.err();
  cam = camera_process(port, images_, "320x240", dir_);
  // (read_jsonl's widths skip a half-written last line.)
  long first = -1;
  for (int i = 0; i < 600 && first < 0; ++i) {
    const auto w = read_jsonl(file).widths;
    const auto at = std::find(w.begin(), w.end(), 320);
    if (at != w.end()) {
      first = at - w.begin();
    } else {
      g_usleep(100000);
    }
  }
  ASSERT_GE(first, 0) << "no 320-wide line\n" << p.err();
  ASSERT_TRUE(wait_lines(10, 60)) << p.err();
  {
    const auto w = read_jsonl(file).widths;
    for (size_t i = first; i < w.size(); ++i) EXPECT_EQ(w[i], 320) << "line " << i + 1;
  }
  // 4. 50 drops and reconnections; resources measured after 10 and after 50, each time while
  // the new connection streams, so each cycle waits for the drop report as above. (Measured in
  // the gap between connections the process holds ~9 fewer fds and ~4 fewer threads than while
  // streaming, which once failed the check.)
  Resources at10;
  for (int cycle = 1; cycle <= 50; ++cycle) {
    ASSERT_TRUE(kill_camera()) << "cycle " << cycle << ": the drop went unnoticed\n" << p.err();
    cam = camera_process(port, images_, "320x240", dir_);
    ASSERT_TRUE(wait_lines(2, 60)) << "cycle " << cycle << "\n" << p.err();
    if (cycle % 10 == 0) std::printf("cycle %d RSS %ld kB\n", cycle, rss_kb(p.pid()));
    if (cycle == 10) at10 = resources_of(p.pid());
  }
  // Over 90 reconnections with glibc's default arenas: +6, +42 and +65 MB in three runs, not
  // monotonic, fds and threads flat: per-thread malloc arenas made as streaming threads start,
  // not a leak. Under MALLOC_ARENA_MAX=2 (the packaged unit's setting) the same 90 measured
  // +4 MB, flat within 245-265 MB. 40 reconnections under it keep CI's time; the bound catches
  // a leak of 1.2 MB a reconnection.
  expect_flat(at10, p.pid(), 48 * 1024, "10 / 50 reconnections");
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_TRUE(read_jsonl(file).well_formed);
}

// ---- autoassign-cameras --http: a real socket, real cameras, a minimal HTTP/1.1 client ----

struct HttpAnswer {
  int status = 0;  // 0: no answer (connection refused, or timed out)
  std::string head, body;
  bool left_open = false;  // the server did not close the connection after answering
};

// One request per connection, the answer read to the end. `keep_alive` leaves out
// "Connection: close", as curl and Prometheus do: the server must close it (or the read waits
// 10 s). A `raw` request is sent as it is, then the sending side is shut.
HttpAnswer http(int port, const std::string& method, const std::string& path,
                const std::string& body = "", const std::string& extra_headers = "",
                const std::string& raw = "", bool keep_alive = false) {
  HttpAnswer a;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{keep_alive ? 2 : 10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return a;
  }
  std::string request = raw;
  if (request.empty()) {
    request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
              (keep_alive ? "" : "Connection: close\r\n") + extra_headers +
              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (413) and close before reading it all
    sent += static_cast<size_t>(n);
  }
  if (!raw.empty()) shutdown(fd, SHUT_WR);
  std::string text;
  char buf[8192];
  ssize_t n = 0;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) text.append(buf, static_cast<size_t>(n));
  a.left_open = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  close(fd);
  const size_t split = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.", 0) != 0 || split == std::string::npos) return a;
  a.status = std::atoi(text.c_str() + 9);
  a.head = text.substr(0, split);
  a.body = text.substr(split + 4);
  return a;
}

// The port the program printed ("http: listening on http://127.0.0.1:PORT/"), 0 if it did not
// within `seconds`.
int http_port(const Process& p, double seconds = 60) {
  const std::string key = "http: listening on http://127.0.0.1:";
  for (int i = 0; i < seconds * 10; ++i) {
    const std::string err = p.err();
    const size_t at = err.find(key);
    if (at != std::string::npos) return std::atoi(err.c_str() + at + key.size());
    g_usleep(100000);
  }
  return 0;
}

// "name{labels}" -> value, from Prometheus text.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    m[line.substr(0, space)] = std::atof(line.c_str() + space + 1);
  }
  return m;
}

// Every object of every line of a JSON-lines file.
int count_objects(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line))
    n += static_cast<int>(nlohmann::json::parse(line)["objects"].size());
  return n;
}

// Polls GET /streams until `done` holds for the list, up to `seconds`.
template <typename Done>
nlohmann::json wait_streams(int port, double seconds, Done done) {
  nlohmann::json list;
  for (int i = 0; i < seconds * 5; ++i) {
    const HttpAnswer a = http(port, "GET", "/streams");
    list = nlohmann::json::parse(a.body, nullptr, false);
    if (a.status == 200 && list.is_array() && done(list)) return list;
    g_usleep(200000);
  }
  return list;
}

// Two clips of real WIDER images, one given on the command line, one added by POST /streams:
// what GET /metrics counts per camera is what its JSON-lines file holds.
TEST_F(Pipelines, CamerasHttpMetricsMatchTheJsonLines) {
  const std::string clip = dir_ + "/clip.mp4";
  ASSERT_EQ(std::system(("gst-launch-1.0 -q multifilesrc location=" + images_ +
                         "/img%03d.jpg index=0 stop-index=19 caps=image/jpeg,framerate=10/1 ! "
                         "jpegdec ! videoconvert ! videoscale add-borders=true ! "
                         "video/x-raw,width=640,height=360,pixel-aspect-ratio=1/1 ! x264enc ! "
                         "mp4mux ! filesink location=" +
                         clip)
                            .c_str()),
            0);
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "file://" + clip}), dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  const HttpAnswer added = http(port, "POST", "/streams", "{\"uri\": \"" + clip + "\"}");
  ASSERT_EQ(added.status, 201) << added.body;
  EXPECT_EQ(nlohmann::json::parse(added.body)["id"], 1);
  const auto list = wait_streams(port, 90, [](const nlohmann::json& l) {
    return l.size() == 2 && l[0]["state"] == "finished" && l[1]["state"] == "finished";
  });
  ASSERT_EQ(list.size(), 2u) << list.dump() << p.err();
  ASSERT_EQ(list[1]["state"], "finished") << list.dump() << p.err();
  EXPECT_EQ(list[0]["uri"], "file://" + clip);
  EXPECT_EQ(list[1]["output"], dir_ + "/camera-1.jsonl");

  const HttpAnswer metrics = http(port, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.head.find("text/plain; version=0.0.4"), std::string::npos) << metrics.head;
  const auto m = parse_metrics(metrics.body);
  for (int id : {0, 1}) {
    const std::string file = dir_ + "/camera-" + std::to_string(id) + ".jsonl";
    const std::string cam = "{camera=\"" + std::to_string(id) + "\"}";
    const Frames f = read_jsonl(file);
    EXPECT_EQ(f.lines, 20) << file;
    EXPECT_EQ(m.at("autoassign_frames_total" + cam), f.lines) << metrics.body;
    EXPECT_EQ(m.at("autoassign_detections_total" + cam), count_objects(file)) << metrics.body;
    EXPECT_GT(m.at("autoassign_detections_total" + cam), 20);  // faces on real photos
    // Without drop-when-busy the model runs on every frame, each timed once.
    EXPECT_EQ(m.at("autoassign_inferences_total" + cam), 20);
    EXPECT_EQ(m.at("autoassign_dropped_frames_total" + cam), 0);
    EXPECT_EQ(m.at("autoassign_inference_latency_seconds_count" + cam), 20);
    EXPECT_EQ(m.at("autoassign_inference_latency_seconds_bucket{camera=\"" + std::to_string(id) +
                   "\",le=\"+Inf\"}"),
              20);
    EXPECT_GT(m.at("autoassign_inference_latency_seconds_sum" + cam), 0);
    EXPECT_EQ(m.at("autoassign_reconnects_total" + cam), 0);
  }
  EXPECT_EQ(m.at("autoassign_models_loaded"), 1);
  EXPECT_EQ(m.at("autoassign_cameras"), 2);
  const double rss = m.at("process_resident_memory_bytes");
  EXPECT_NEAR(rss / 1024, rss_kb(p.pid()), 0.2 * rss / 1024);
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
}

// Whether something accepts TCP connections on 127.0.0.1:port.
bool accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return up;
}

// The whole camera service in one command (--track --mqtt --http) with the broker down when it
// starts: the cameras run and write tracked JSON lines at once (a broker that is down holds
// nothing: the HTTP endpoint answers, the stream is playing), and once a real mosquitto comes
// up the documents reach a real subscriber (mosquitto_sub), ids included.
TEST_F(Pipelines, CamerasTrackAndMqttWithTheBrokerDownAtStart) {
  if (!fs::exists("/usr/sbin/mosquitto") || !fs::exists("/usr/bin/mosquitto_sub"))
    GTEST_SKIP() << "mosquitto and mosquitto-clients are not installed";
  TestCamera camera(free_port(), images_);
  const int broker_port = free_port();
  const std::string broker = "127.0.0.1:" + std::to_string(broker_port);
  const auto t0 = std::chrono::steady_clock::now();
  Process p(cameras_cmd({"--track", "--mqtt", broker, "--topic", "cams/door", "--http",
                         "127.0.0.1:0", camera.url()}),
            dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  const auto playing = wait_streams(port, 60, [](const nlohmann::json& l) {
    return l.size() == 1 && l[0]["state"] == "running";
  });
  ASSERT_EQ(playing.size(), 1u) << playing.dump() << p.err();
  ASSERT_EQ(playing[0]["state"], "running") << playing.dump() << p.err();
  // The model loads in well under this; the broker's 5 s connect wait would add to it.
  const double to_playing =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string json = dir_ + "/camera-0.jsonl";
  for (int i = 0; i < 100 && read_jsonl(json).with_faces < 5; ++i) g_usleep(100000);
  ASSERT_GE(read_jsonl(json).with_faces, 5) << p.err();

  const std::string conf = dir_ + "/mosquitto.conf";
  std::ofstream(conf) << "listener " << broker_port << " 127.0.0.1\nallow_anonymous true\n";
  Process mosquitto({"/usr/sbin/mosquitto", "-c", conf}, dir_);
  for (int i = 0; i < 100 && !accepts(broker_port); ++i) g_usleep(50000);
  ASSERT_TRUE(accepts(broker_port)) << mosquitto.err();
  // Ten documents with a face; the element's back-off after a failed connect is at most 10 s.
  Process sub({"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_port), "-t",
               "cams/door", "-C", "40"},
              dir_);
  ASSERT_EQ(sub.wait(40), 0) << sub.err() << p.err();
  std::istringstream docs(sub.out());
  int with_ids = 0, lines = 0;
  for (std::string line; std::getline(docs, line); ++lines) {
    const auto doc = nlohmann::json::parse(line);
    EXPECT_EQ(doc.at("source"), camera.url());
    for (const auto& o : doc.at("objects")) {
      ASSERT_TRUE(o.contains("id")) << line;  // every object leaving the tracker has one
      EXPECT_GE(o.at("id").get<int>(), 1);
    }
    with_ids += doc.at("objects").empty() ? 0 : 1;
  }
  EXPECT_EQ(lines, 40);
  EXPECT_GE(with_ids, 10) << sub.out();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_LT(to_playing, 30) << "seconds until the camera played";
}

// Thirty cameras added and removed while one keeps running: each removal leaves the others
// undisturbed (no reconnection, frames still flowing), and memory, fds and threads stay flat.
TEST_F(Pipelines, CamerasHttpAddRemoveCycles) {
  // As the packaged service runs it (MALLOC_ARENA_MAX=2): without it glibc's per-thread arenas,
  // made as streams start, moved the RSS floor by +52 MB in one full-suite run of this session.
  setenv("MALLOC_ARENA_MAX", "2", 1);
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--drop-when-busy", "test"}), dir_);
  unsetenv("MALLOC_ARENA_MAX");
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  // Keep-alive requests, as curl sends them: libsoup 3.2 leaked one socket per such request
  // before the server answered with "Connection: close" (the fd count below pins it).
  auto frames_of = [&](int id) -> int64_t {
    const HttpAnswer a = http(port, "GET", "/streams/" + std::to_string(id), "", "", "", true);
    EXPECT_FALSE(a.left_open) << "the server kept a keep-alive connection open";
    const auto j = nlohmann::json::parse(a.body, nullptr, false);
    return j.is_object() && j.contains("frames") ? j["frames"].get<int64_t>() : -1;
  };
  Resources at5;
  std::vector<long> rss;  // at the end of each cycle from the fifth on
  const int kCycles = 30;
  for (int cycle = 1; cycle <= kCycles; ++cycle) {
    const int64_t keeper_before = frames_of(0);
    const HttpAnswer added = http(port, "POST", "/streams", R"({"uri": "test"})");
    ASSERT_EQ(added.status, 201) << added.body << p.err();
    const int id = nlohmann::json::parse(added.body)["id"];
    EXPECT_EQ(id, cycle);
    bool flowing = false;
    for (int i = 0; i < 300 && !flowing; ++i) {
      flowing = frames_of(id) >= 3;
      if (!flowing) g_usleep(100000);
    }
    ASSERT_TRUE(flowing) << "cycle " << cycle << "\n" << p.err();
    const HttpAnswer removed = http(port, "DELETE", "/streams/" + std::to_string(id));
    ASSERT_EQ(removed.status, 200) << removed.body;
    EXPECT_EQ(http(port, "GET", "/streams/" + std::to_string(id)).status, 404);
    EXPECT_GT(frames_of(0), keeper_before) << "cycle " << cycle;
    if (cycle == 5) at5 = resources_of(p.pid());
    if (cycle >= 5) rss.push_back(resources_of(p.pid()).rss_kb);
  }
  const auto list = nlohmann::json::parse(http(port, "GET", "/streams").body);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["reconnects"], 0);
  EXPECT_EQ(list[0]["state"], "running");
  // Resident memory swings while streams come and go (the buffers of the stream being set up
  // or torn down; polled during one run on a 2-core machine: 206-256 MB), so two single samples
  // differed by up to +57 MB in 1 run of 4 with no leak. The floor does not swing (the lowest of
  // cycles 5-9 against the lowest of the last five moved -3 to +9 MB in eight runs); it catches
  // a leak of 2 MB a cycle (+42 MB over the 21 cycles between). fds and threads, exact counts,
  // are the sharp checks.
  const long early = *std::min_element(rss.begin(), rss.begin() + 5);
  const long late = *std::min_element(rss.end() - 5, rss.end());
  std::printf("lowest RSS over cycles 5-9 / %d-%d: %ld / %ld kB\n", kCycles - 4, kCycles, early,
              late);
  EXPECT_LT(late - early, 32 * 1024) << "resident memory floor grew by " << (late - early) << " kB";
  expect_flat(at5, p.pid(), 0, "5 / 30 add+remove cycles");
  const auto m = parse_metrics(http(port, "GET", "/metrics").body);
  EXPECT_EQ(m.at("autoassign_models_loaded"), 1);
  EXPECT_EQ(m.count("autoassign_frames_total{camera=\"30\"}"), 0u);  // removed: not reported
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_TRUE(read_jsonl(dir_ + "/camera-0.jsonl").well_formed);
}

// Bad requests get a 4xx with a JSON reason and the service keeps serving; with a token, nothing
// is done without it; an address other machines can reach needs one.
// --max-streams bounds the cameras, given and added (issue 26: 20 POSTs took the process from
// 262 MB to 1.03 GB with nothing to stop a 21st): the one past it is a 429 naming the limit.
TEST_F(Pipelines, CamerasHttpStreamLimit) {
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--max-streams", "1", "--drop-when-busy"}), dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  EXPECT_EQ(http(port, "POST", "/streams", R"({"uri": "test"})").status, 201) << p.err();
  const HttpAnswer second = http(port, "POST", "/streams", R"({"uri": "test"})");
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_NE(second.body.find("at most 1 streams (--max-streams)"), std::string::npos)
      << second.body;
  EXPECT_EQ(nlohmann::json::parse(http(port, "GET", "/streams").body).size(), 1u);
  EXPECT_EQ(http(port, "DELETE", "/streams/0").status, 200);
  EXPECT_EQ(http(port, "POST", "/streams", R"({"uri": "test"})").status, 201);  // room again
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
}

// Sources whose servers accept the connection and never answer (an HTTP clip, an RTSP camera):
// the service's thread (HTTP and signals) never waits on them. Adding, listing and removing
// them answers at once, and Ctrl-C ends the program promptly.
TEST_F(Pipelines, CamerasSourcesThatNeverAnswerHoldNothing) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  listen(listener, 16);  // accepted by the kernel; nobody ever reads or answers
  const std::string silent = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--stall-seconds", "30"}), dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  auto timed = [](auto&& request) {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpAnswer answer = request();
    return std::make_pair(answer,
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0));
  };
  for (const std::string& uri : {"http://" + silent + "/clip.mp4", "rtsp://" + silent + "/cam"}) {
    SCOPED_TRACE(uri);
    const auto [added, add_time] =
        timed([&] { return http(port, "POST", "/streams", R"({"uri": ")" + uri + R"("})"); });
    EXPECT_EQ(added.status, 201) << added.body;
    EXPECT_LT(add_time.count(), 2.0);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the source is connecting now
    const auto [listed, list_time] = timed([&] { return http(port, "GET", "/streams"); });
    EXPECT_EQ(listed.status, 200);
    EXPECT_LT(list_time.count(), 2.0);
  }
  const auto [removed, remove_time] = timed([&] { return http(port, "DELETE", "/streams/0"); });
  EXPECT_EQ(removed.status, 200);
  EXPECT_LT(remove_time.count(), 2.0);
  const auto t0 = std::chrono::steady_clock::now();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  close(listener);
}

// A local file whose open() blocks: this process holds a write lease on it, so the kernel
// holds any other open until the lease is released (or lease-break-time, 45 s, passes), as a
// file on a stuck network mount would. The camera's state change opens it; the thread that
// serves HTTP and signals must not be the one that waits.
TEST_F(Pipelines, CamerasFileWhoseOpenBlocksHoldsNothing) {
  const std::string clip = dir_ + "/leased.mp4";
  std::ofstream(clip) << "not yet a clip";
  const int fd = open(clip.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  signal(SIGIO, SIG_IGN);  // the lease-break notice (default action: terminate)
  if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0) {
    close(fd);
    GTEST_SKIP() << "no write lease here: " << std::strerror(errno);
  }
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--max-streams", "2"}), dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  auto seconds_since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto t0 = std::chrono::steady_clock::now();
  const HttpAnswer added = http(port, "POST", "/streams", R"({"uri": ")" + clip + R"("})");
  EXPECT_EQ(added.status, 201) << added.body;
  EXPECT_LT(seconds_since(t0), 2.0) << "POST waited on the file's open()";
  // (Time for the start to reach filesrc's open: removed before it, the camera never opens.)
  std::this_thread::sleep_for(std::chrono::seconds(1));
  t0 = std::chrono::steady_clock::now();
  const HttpAnswer listed = http(port, "GET", "/streams");
  EXPECT_EQ(listed.status, 200);
  EXPECT_LT(seconds_since(t0), 2.0) << "GET waited on the file's open()";
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(http(port, "DELETE", "/streams/0").status, 200);
  EXPECT_LT(seconds_since(t0), 2.0) << "DELETE waited on the file's open()";
  // Each removed camera whose pipeline cannot stop holds a thread: they count against
  // --max-streams (2), so adding and removing cannot pile them up.
  EXPECT_EQ(http(port, "POST", "/streams", R"({"uri": ")" + clip + R"("})").status, 201);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(http(port, "DELETE", "/streams/1").status, 200);
  // (A stop under way for more than a second counts as stuck; a quick one never does.)
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const HttpAnswer full = http(port, "POST", "/streams", R"({"uri": "test"})");
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_NE(full.body.find("2 camera pipelines are still stopping"), std::string::npos)
      << full.body;
  // Released: the blocked opens return, the removed cameras' pipelines stop, a camera can be
  // added again, and Ctrl-C ends the program with it.
  fcntl(fd, F_SETLEASE, F_UNLCK);
  close(fd);
  int status = 0;
  for (int i = 0; i < 50 && status != 201; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = http(port, "POST", "/streams", R"({"uri": "test"})").status;
  }
  EXPECT_EQ(status, 201);
  t0 = std::chrono::steady_clock::now();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
  EXPECT_LT(seconds_since(t0), 10.0);
  signal(SIGIO, SIG_DFL);
}

// Slow and stalled clients (issue 26): 300 sockets holding half a header, and bodies shorter
// than their Content-Length, stayed open for good and, at the open-files limit, stopped the
// endpoint for everyone, before any token check. Now a request silent for 10 s is cut off, a
// proper request is answered meanwhile, and every stalled socket is closed by the server.
TEST_F(Pipelines, CamerasHttpCutsOffStalledClients) {
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--http-token-file", token_file("s3cret")}),
            dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  std::vector<int> stalled;
  auto open_with = [&](const std::string& text) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      return;
    }
    (void)!write(fd, text.data(), text.size());
    stalled.push_back(fd);
  };
  // A slow client is never silent long: one byte of its headers a second (opened first, so it has
  // the full idle limit). Each read succeeds within that limit, so only a limit on the whole
  // request can end it.
  // Clients that connect and close at once (health checks): libsoup starts a request for each
  // and never ends it; the server must neither keep them nor touch them once freed.
  for (int i = 0; i < 80; ++i) {
    open_with("");
    close(stalled.back());
    stalled.pop_back();
  }
  const size_t before = stalled.size();
  open_with("G");
  ASSERT_EQ(stalled.size(), before + 1);
  const int dribbler = stalled.back();
  stalled.pop_back();
  std::atomic<bool> dribbling{true};
  std::thread dribble([&] {
    const std::string rest = "ET /streams HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(60, 'a');
    for (size_t i = 0; i < rest.size() && dribbling; ++i) {
      if (send(dribbler, &rest[i], 1, MSG_NOSIGNAL) != 1) break;  // cut off
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });
  const auto dribble_start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) open_with("GET /streams HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  open_with("POST /streams HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n0123456789");
  open_with("POST /streams HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ur");
  EXPECT_GE(stalled.size(), 90u);  // no ASSERT: the dribbling thread must be joined
  // Meanwhile the endpoint answers a proper request.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(http(port, "GET", "/streams", "", "Authorization: Bearer s3cret\r\n").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  // Within 10 s of silence (and a margin) the server has closed every stalled socket: a read
  // sees the end of the stream (or a reset), never "would block".
  std::this_thread::sleep_for(std::chrono::seconds(13));
  int closed = 0;
  for (int fd : stalled) {
    char buf[512];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      ++closed;
    } else if (n > 0 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 0) {
      ++closed;  // an answer (408 or 413), then the close
    }
    close(fd);
  }
  EXPECT_EQ(closed, static_cast<int>(stalled.size()));
  // The dribbler is cut off once its request has taken 15 s (read: the end or a reset).
  std::this_thread::sleep_until(dribble_start + std::chrono::seconds(18));
  char buf[512];
  ssize_t n = recv(dribbler, buf, sizeof buf, MSG_DONTWAIT);
  if (n > 0) n = recv(dribbler, buf, sizeof buf, MSG_DONTWAIT);  // a 408, then the close
  EXPECT_TRUE(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      << "a client sending a byte a second still held its request after 18 s";
  dribbling = false;
  dribble.join();
  close(dribbler);
  EXPECT_EQ(http(port, "GET", "/streams", "", "Authorization: Bearer s3cret\r\n").status, 200);
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
}

TEST_F(Pipelines, CamerasTokenNeverOnTheCommandLine) {
  const std::string cameras = env("AUTOASSIGN_CAMERAS");
  Process on_argv(cameras_cmd({"--http", "127.0.0.1:0", "--http-token", "s3cret"}), dir_);
  EXPECT_EQ(on_argv.wait(30), 2);
  EXPECT_NE(on_argv.err().find("visible to every user"), std::string::npos) << on_argv.err();
  Process empty(cameras_cmd({"--http", "127.0.0.1:0", "--http-token-file",
                             write_file("empty-token", "\nsecond line\n")}),
                dir_);
  EXPECT_EQ(empty.wait(30), 2);
  EXPECT_NE(empty.err().find("first line is empty"), std::string::npos) << empty.err();
  // From a file, as the service's EnvironmentFile or a credentials file gives it.
  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--http-token-file", token_file("t0ken")}), dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  EXPECT_EQ(http(port, "GET", "/streams").status, 401);
  EXPECT_EQ(http(port, "GET", "/streams", "", "Authorization: Bearer t0ken\r\n").status, 200);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(30), 0) << p.err();
}

TEST_F(Pipelines, CamerasHttpBadRequestsAndToken) {
  Process open_to_all(cameras_cmd({"--http", "0.0.0.0:0"}), dir_);
  EXPECT_EQ(open_to_all.wait(30), 2);
  EXPECT_NE(open_to_all.err().find("--http-token"), std::string::npos) << open_to_all.err();

  Process p(cameras_cmd({"--http", "127.0.0.1:0", "--http-token-file", token_file("s3cret")}),
            dir_);
  const int port = http_port(p);
  ASSERT_GT(port, 0) << p.err();
  const std::string auth = "Authorization: Bearer s3cret\r\n";
  auto expect_error = [](const HttpAnswer& a, int status, const std::string& part) {
    EXPECT_EQ(a.status, status) << a.head << "\n" << a.body;
    const auto j = nlohmann::json::parse(a.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << a.body;
    EXPECT_NE(j["error"].get<std::string>().find(part), std::string::npos) << a.body;
  };
  expect_error(http(port, "GET", "/streams"), 401, "Bearer");
  expect_error(
      http(port, "POST", "/streams", R"({"uri": "test"})", "Authorization: Bearer nope\r\n"), 401,
      "wrong token");
  EXPECT_EQ(http(port, "GET", "/streams", "", auth).body, "[]\n");
  expect_error(http(port, "POST", "/streams", "{\"uri\": ", auth), 400, "not valid JSON");
  expect_error(http(port, "POST", "/streams", R"({"url": "test"})", auth), 400, "unknown key");
  expect_error(http(port, "POST", "/streams", R"({"uri": "/no/such/clip.mp4"})", auth), 400,
               "existing file");
  // A file:// URI that is a FIFO nobody writes (issue 26: the service froze in open(), every
  // later request timed out and SIGINT went unheard) or a device: refused, the service answers.
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_error(http(port, "POST", "/streams", "{\"uri\": \"file://" + fifo + "\"}", auth), 400,
               "is a FIFO (named pipe), not a regular file");
  expect_error(http(port, "POST", "/streams", R"({"uri": "file:///dev/zero"})", auth), 400,
               "is a character device");
  expect_error(http(port, "DELETE", "/streams/5", "", auth), 404, "no stream 5");
  expect_error(http(port, "DELETE", "/streams/x", "", auth), 404, "ids are numbers");
  expect_error(http(port, "PUT", "/streams", "{}", auth), 405, "PUT");
  expect_error(http(port, "GET", "/", "", auth), 404, "no such endpoint");
  // A body announced larger than 64 KiB is refused (and read without being kept).
  expect_error(http(port, "POST", "/streams", std::string(200 * 1024, 'x'), auth), 413,
               "larger than");
  expect_error(
      http(port, "", "", "", "",
           "POST /streams HTTP/1.1\r\nHost: x\r\n" + auth +
               "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      411, "Content-Length");
  // Not HTTP at all, and a request cut short: answered or dropped by the server, never fatal.
  http(port, "", "", "", "", std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 18));
  http(port, "", "", "", "", "POST /streams HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"ur");
  EXPECT_EQ(http(port, "GET", "/metrics", "", auth).status, 200) << p.err();
  const auto list = nlohmann::json::parse(http(port, "GET", "/streams", "", auth).body);
  EXPECT_TRUE(list.empty()) << list.dump();  // none of the refused requests added a camera
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(30), 0) << p.err();
}

}  // namespace

// `pipelines_test --serve-camera PORT IMAGES WxH` serves the test camera until killed (for
// RtspChaos); anything else runs the tests.
int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--serve-camera") {
    gst_init(nullptr, nullptr);
    int w = 640, h = 360;
    std::sscanf(argv[4], "%dx%d", &w, &h);
    TestCamera camera(std::atoi(argv[2]), argv[3], w, h);
    for (;;) pause();
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
