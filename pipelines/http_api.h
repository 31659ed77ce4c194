/* SPDX-License-Identifier: MIT */
// The control and metrics endpoint of autoassign-cameras (--http ADDR:PORT), in two parts:
//
// - handle_request: the routes, as a pure function of (method, path, body, Authorization) over
//   a StreamService the program implements, so every answer (4xx included) is testable without
//   a socket;
// - HttpServer: libsoup 3 on the GLib main loop of the program, which calls handle_request. The
//   handlers run on that loop, the thread that owns the cameras: no locking between a request
//   and the camera bookkeeping.
//
// Routes (JSON unless said otherwise; every error is {"error": "..."} with a 4xx status):
//   GET    /metrics      Prometheus text format 0.0.4
//   GET    /streams      [{"id", "uri" (credentials redacted), "state", "fps", ...}, ...]
//   POST   /streams      {"uri": "..."} -> 201 {"id": N}; the other cameras keep running
//   GET    /streams/N    one camera
//   DELETE /streams/N    stops and removes camera N -> 200 {"id": N, "removed": true}
// With a token set, every request needs "Authorization: Bearer TOKEN" (401 otherwise).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace autoassign::pipelines {

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

/// One camera as GET /streams shows it.
struct StreamInfo {
  int id = 0;
  std::string uri;    // credentials already redacted
  std::string state;  // starting | running | reconnecting | finished | failed
  double fps = 0;     // frames per second over the last few seconds
  int64_t frames = 0;
  int reconnects = 0;
  std::string output;      // the JSON-lines file, or "-"
  std::string last_error;  // redacted; empty if none
};

/// A source the service refuses (POST /streams answers 400 with the message).
struct BadSource : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// The service runs as many streams as it is allowed (POST /streams answers 429).
struct TooManyStreams : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What the camera program exposes to the endpoint.
class StreamService {
 public:
  virtual ~StreamService() = default;
  virtual std::vector<StreamInfo> streams() = 0;
  /// Starts a camera; returns its id. Throws BadSource for a source it will not take,
  /// TooManyStreams at the service's limit.
  virtual int add(const std::string& uri) = 0;
  /// Stops and forgets camera `id`; false if there is none.
  virtual bool remove(int id) = 0;
  /// The Prometheus exposition text.
  virtual std::string metrics() = 0;
};

/// Largest request body read (a POST /streams body is a few hundred bytes).
constexpr size_t kMaxRequestBody = 64 * 1024;

/// Answers one request. `token` empty = no authentication required. Never throws: a failure of
/// the service becomes a 500 with its message.
HttpReply handle_request(StreamService& service, const std::string& method, const std::string& path,
                         const std::string& body, const std::string& authorization,
                         const std::string& token);

/// "HOST:PORT" (HOST a numeric IPv4 or [IPv6] address, or "localhost"; PORT 0-65535, 0 = any
/// free port), or a bare "PORT" (127.0.0.1). Throws std::invalid_argument naming what is wrong.
void parse_listen_address(const std::string& text, std::string* host, int* port);

/// The endpoint on the default GLib main context. Listening on an address other than a
/// loopback one needs a token (refused otherwise, with the reason).
class HttpServer {
 public:
  HttpServer(StreamService& service, std::string token);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  /// Binds and listens; throws std::runtime_error with the reason on failure.
  void listen(const std::string& address);
  /// The port actually bound, and the endpoint's base URL "http://HOST:PORT/" (after listen).
  int port() const { return port_; }
  const std::string& url() const { return url_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::string url_;
};

}  // namespace autoassign::pipelines
