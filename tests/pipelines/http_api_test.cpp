// SPDX-License-Identifier: MIT
// The routes of autoassign-cameras' --http endpoint (handle_request) over a recording
// StreamService, every answer checked against the status and body a client must get; the
// Prometheus writer against hand-written exposition text. The program itself, on a real socket
// with real cameras, is tested in pipelines_test (CamerasHttp*).
#include "http_api.h"

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "metrics.h"

namespace {

using autoassign::pipelines::BadSource;
using autoassign::pipelines::handle_request;
using autoassign::pipelines::HttpReply;
using autoassign::pipelines::StreamInfo;
using json = nlohmann::json;

class Recorder : public autoassign::pipelines::StreamService {
 public:
  std::vector<StreamInfo> list;
  std::vector<std::string> added;
  std::vector<int> removed;
  bool throw_in_metrics = false;

  std::vector<StreamInfo> streams() override { return list; }
  int add(const std::string& uri) override {
    if (uri == "refused") throw BadSource("not a camera: refused");
    added.push_back(uri);
    StreamInfo s;
    s.id = 10 + static_cast<int>(added.size());
    s.uri = uri;
    s.state = "starting";
    list.push_back(s);
    return s.id;
  }
  bool remove(int id) override {
    for (auto it = list.begin(); it != list.end(); ++it) {
      if (it->id == id) {
        list.erase(it);
        removed.push_back(id);
        return true;
      }
    }
    return false;
  }
  std::string metrics() override {
    if (throw_in_metrics) throw std::runtime_error("boom");
    return "autoassign_cameras 0\n";
  }
};

HttpReply call(Recorder& r, const std::string& method, const std::string& path,
               const std::string& body = "", const std::string& auth = "",
               const std::string& token = "") {
  return handle_request(r, method, path, body, auth, token);
}

// An error answer: the status, a JSON object {"error": "..."} whose text holds `part`.
void expect_error(const HttpReply& reply, int status, const std::string& part) {
  EXPECT_EQ(reply.status, status) << reply.body;
  EXPECT_EQ(reply.content_type, "application/json");
  const json j = json::parse(reply.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << reply.body;
  ASSERT_TRUE(j.contains("error")) << reply.body;
  EXPECT_NE(j["error"].get<std::string>().find(part), std::string::npos) << reply.body;
}

std::string header(const HttpReply& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(HttpApi, AddListGetAndRemoveAStream) {
  Recorder r;
  HttpReply reply = call(r, "POST", "/streams", R"({"uri": "rtsp://10.0.0.5/s1"})");
  EXPECT_EQ(reply.status, 201) << reply.body;
  EXPECT_EQ(json::parse(reply.body), json({{"id", 11}}));
  ASSERT_EQ(r.added, std::vector<std::string>{"rtsp://10.0.0.5/s1"});

  reply = call(r, "GET", "/streams");
  EXPECT_EQ(reply.status, 200);
  const json list = json::parse(reply.body);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], 11);
  EXPECT_EQ(list[0]["uri"], "rtsp://10.0.0.5/s1");
  EXPECT_EQ(list[0]["state"], "starting");
  EXPECT_FALSE(list[0].contains("last_error"));  // only when there is one

  reply = call(r, "GET", "/streams/11");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(json::parse(reply.body)["id"], 11);

  reply = call(r, "DELETE", "/streams/11");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(json::parse(reply.body), json({{"id", 11}, {"removed", true}}));
  EXPECT_EQ(r.removed, std::vector<int>{11});
  EXPECT_EQ(json::parse(call(r, "GET", "/streams").body), json::array());
}

TEST(HttpApi, MalformedBodiesAre400WithTheReason) {
  Recorder r;
  expect_error(call(r, "POST", "/streams", "{\"uri\": "), 400, "not valid JSON");
  expect_error(call(r, "POST", "/streams", ""), 400, "not valid JSON");
  expect_error(call(r, "POST", "/streams", "[\"rtsp://x\"]"), 400, "JSON object");
  expect_error(call(r, "POST", "/streams", "{}"), 400, "\"uri\" (a string) is required");
  expect_error(call(r, "POST", "/streams", "{\"uri\": 5}"), 400, "\"uri\" (a string)");
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"\"}"), 400, "empty");
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"test\", \"x\": 1}"), 400,
               "unknown key 'x'");
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"a\\nb\"}"), 400, "control character");
  // Invalid UTF-8 in the JSON text itself: nlohmann refuses it at parsing.
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"\xff\xfe\"}"), 400, "not valid JSON");
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"" + std::string(5000, 'a') + "\"}"), 400,
               "longer than 4096");
  expect_error(call(r, "POST", "/streams", std::string(70 * 1024, ' ')), 413, "larger than");
  expect_error(call(r, "POST", "/streams", "{\"uri\": \"refused\"}"), 400, "not a camera");
  EXPECT_TRUE(r.added.empty());
}

TEST(HttpApi, UnknownIdsPathsAndWrongMethods) {
  Recorder r;
  expect_error(call(r, "DELETE", "/streams/7"), 404, "no stream 7");
  expect_error(call(r, "GET", "/streams/7"), 404, "no stream 7");
  expect_error(call(r, "DELETE", "/streams/abc"), 404, "ids are numbers");
  expect_error(call(r, "DELETE", "/streams/-1"), 404, "ids are numbers");
  expect_error(call(r, "DELETE", "/streams/99999999999999"), 404, "ids are numbers");
  expect_error(call(r, "DELETE", "/streams/"), 404, "ids are numbers");
  expect_error(call(r, "GET", "/nope"), 404, "no such endpoint");
  HttpReply reply = call(r, "PUT", "/streams");
  expect_error(reply, 405, "PUT");
  EXPECT_EQ(header(reply, "Allow"), "GET, POST");
  reply = call(r, "POST", "/streams/3");
  expect_error(reply, 405, "POST");
  EXPECT_EQ(header(reply, "Allow"), "GET, DELETE");
  reply = call(r, "DELETE", "/metrics");
  expect_error(reply, 405, "DELETE");
  EXPECT_EQ(header(reply, "Allow"), "GET");
}

TEST(HttpApi, MetricsAreTextAndServiceFailuresAre500) {
  Recorder r;
  HttpReply reply = call(r, "GET", "/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(reply.body, "autoassign_cameras 0\n");
  r.throw_in_metrics = true;
  expect_error(call(r, "GET", "/metrics"), 500, "boom");
}

TEST(HttpApi, TokenIsRequiredWhenSet) {
  Recorder r;
  const std::string token = "s3cret";
  HttpReply reply = call(r, "GET", "/streams", "", "", token);
  expect_error(reply, 401, "Authorization: Bearer");
  EXPECT_EQ(header(reply, "WWW-Authenticate"), "Bearer");
  expect_error(call(r, "GET", "/streams", "", "Bearer wrong", token), 401, "wrong token");
  expect_error(call(r, "GET", "/streams", "", "Bearer s3cre", token), 401, "wrong token");
  expect_error(call(r, "GET", "/streams", "", "Bearer s3cret2", token), 401, "wrong token");
  expect_error(call(r, "GET", "/streams", "", "s3cret", token), 401, "wrong token");
  // Refused requests do nothing.
  expect_error(call(r, "POST", "/streams", R"({"uri": "test"})", "Bearer x", token), 401, "");
  EXPECT_TRUE(r.added.empty());
  EXPECT_EQ(call(r, "GET", "/streams", "", "Bearer s3cret", token).status, 200);
  EXPECT_EQ(call(r, "POST", "/streams", R"({"uri": "test"})", "Bearer s3cret", token).status, 201);
}

TEST(HttpApi, ListenAddresses) {
  std::string host;
  int port = -1;
  autoassign::pipelines::parse_listen_address("127.0.0.1:8080", &host, &port);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  autoassign::pipelines::parse_listen_address("localhost:0", &host, &port);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 0);
  autoassign::pipelines::parse_listen_address("[::1]:9000", &host, &port);
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 9000);
  autoassign::pipelines::parse_listen_address("8080", &host, &port);  // a bare port: loopback
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  for (const char* bad : {"", "808080", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000",
                          "camera.local:80", "1.2.3:80", ":80", "127.0.0.1:-1"}) {
    EXPECT_THROW(autoassign::pipelines::parse_listen_address(bad, &host, &port),
                 std::invalid_argument)
        << bad;
  }
}

TEST(Prometheus, HistogramBucketsAreCumulativeAndTheTextIsTheFormats) {
  autoassign::pipelines::LatencyHistogram h;
  // 0.004 s -> le 0.005; 0.005 -> le 0.005 (bounds are inclusive); 0.03 -> le 0.035;
  // 7 s -> only +Inf; a NaN or a negative time is not an observation.
  for (double s : {0.004, 0.005, 0.03, 7.0, -1.0, std::nan("")}) h.observe(s);
  const auto snap = h.snapshot();
  EXPECT_EQ(snap.count, 4u);
  EXPECT_DOUBLE_EQ(snap.sum, 7.039);
  const std::vector<uint64_t> expected = {0, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  EXPECT_EQ(std::vector<uint64_t>(snap.cumulative.begin(), snap.cumulative.end()), expected);

  autoassign::pipelines::Exposition m;
  m.family("x_total", "counter", "Things.");
  m.sample("x_total", {{"camera", "0"}, {"uri", "rtsp://a/\"b\"\\c\nd"}}, 3);
  m.sample("x_total", {{"camera", "1"}}, 0.25);
  m.family("lat_seconds", "histogram", "Latency.");
  autoassign::pipelines::LatencyHistogram one;
  one.observe(0.015);
  m.histogram("lat_seconds", {{"camera", "0"}}, one.snapshot());
  std::string text = m.text();
  const std::string head =
      "# HELP x_total Things.\n"
      "# TYPE x_total counter\n"
      "x_total{camera=\"0\",uri=\"rtsp://a/\\\"b\\\"\\\\c\\nd\"} 3\n"
      "x_total{camera=\"1\"} 0.25\n"
      "# HELP lat_seconds Latency.\n"
      "# TYPE lat_seconds histogram\n"
      "lat_seconds_bucket{camera=\"0\",le=\"0.002\"} 0\n"
      "lat_seconds_bucket{camera=\"0\",le=\"0.005\"} 0\n"
      "lat_seconds_bucket{camera=\"0\",le=\"0.01\"} 0\n"
      "lat_seconds_bucket{camera=\"0\",le=\"0.02\"} 1\n";
  EXPECT_EQ(text.substr(0, head.size()), head);
  const std::string tail =
      "lat_seconds_bucket{camera=\"0\",le=\"5\"} 1\n"
      "lat_seconds_bucket{camera=\"0\",le=\"+Inf\"} 1\n"
      "lat_seconds_sum{camera=\"0\"} 0.015\n"
      "lat_seconds_count{camera=\"0\"} 1\n";
  ASSERT_GE(text.size(), tail.size());
  EXPECT_EQ(text.substr(text.size() - tail.size()), tail);
  // One group per family, as the format requires: a sample of an earlier family, or a family
  // declared again, is refused (the camera service once wrote up/info HELP lines together and
  // their samples interleaved camera by camera).
  EXPECT_THROW(m.sample("x_total", {{"camera", "2"}}, 1), std::logic_error);
  EXPECT_THROW(m.family("x_total", "counter", "again"), std::logic_error);
  autoassign::pipelines::Exposition empty;
  EXPECT_THROW(empty.sample("y", {}, 1), std::logic_error);
}

}  // namespace
