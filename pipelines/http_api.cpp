/* SPDX-License-Identifier: MIT */
#include "http_api.h"

#include <libsoup/soup.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "autoassign/core/types.h"

namespace autoassign::pipelines {

namespace {

using json = nlohmann::json;

HttpReply error_reply(int status, const std::string& message) {
  HttpReply r;
  r.status = status;
  // Messages may quote what the client sent: make them valid UTF-8 before they become JSON.
  r.body = json{{"error", autoassign::sanitize_utf8(message)}}.dump() + "\n";
  return r;
}

HttpReply json_reply(int status, const json& body) {
  HttpReply r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

HttpReply method_not_allowed(const std::string& method, const std::string& path,
                             const std::string& allow) {
  HttpReply r = error_reply(
      405, "method " + method + " is not allowed on " + path + " (allowed: " + allow + ")");
  r.headers.emplace_back("Allow", allow);
  return r;
}

// Compares without an early exit, so the time taken does not tell how much of a guess matched.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned ca = i < a.size() ? static_cast<unsigned char>(a[i]) : 0u;
    const unsigned cb = i < b.size() ? static_cast<unsigned char>(b[i]) : 0u;
    diff |= ca ^ cb;
  }
  return diff == 0;
}

json stream_json(const StreamInfo& s) {
  json j{{"id", s.id},        {"uri", s.uri},       {"state", s.state},
         {"fps", s.fps},      {"frames", s.frames}, {"reconnects", s.reconnects},
         {"output", s.output}};
  if (!s.last_error.empty()) j["last_error"] = s.last_error;
  return j;
}

// "/streams/N" -> N; -1 if the tail is not a plain decimal id.
int parse_id(const std::string& tail) {
  if (tail.empty() || tail.size() > 9) return -1;
  for (char c : tail) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
  }
  return std::stoi(tail);
}

HttpReply post_stream(StreamService& service, const std::string& body) {
  if (body.size() > kMaxRequestBody) {
    return error_reply(413,
                       "request body larger than " + std::to_string(kMaxRequestBody) + " bytes");
  }
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return error_reply(400, "the body is not valid JSON");
  if (!j.is_object()) return error_reply(400, "the body must be a JSON object {\"uri\": \"...\"}");
  for (const auto& item : j.items()) {
    if (item.key() != "uri") return error_reply(400, "unknown key '" + item.key() + "'");
  }
  if (!j.contains("uri") || !j["uri"].is_string()) {
    return error_reply(400, "\"uri\" (a string) is required");
  }
  const std::string uri = j["uri"].get<std::string>();
  if (uri.empty()) return error_reply(400, "\"uri\" is empty");
  if (uri.size() > 4096) return error_reply(400, "\"uri\" is longer than 4096 bytes");
  bool changed = false;
  autoassign::sanitize_utf8(uri, &changed);
  if (changed) return error_reply(400, "\"uri\" is not valid UTF-8");
  for (char c : uri) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return error_reply(400, "\"uri\" holds a control character");
    }
  }
  try {
    const int id = service.add(uri);
    return json_reply(201, json{{"id", id}});
  } catch (const BadSource& e) {
    return error_reply(400, e.what());
  } catch (const TooManyStreams& e) {
    return error_reply(429, e.what());
  }
}

}  // namespace

HttpReply handle_request(StreamService& service, const std::string& method, const std::string& path,
                         const std::string& body, const std::string& authorization,
                         const std::string& token) {
  try {
    if (!token.empty() && !same_secret(authorization, "Bearer " + token)) {
      HttpReply r = error_reply(401, authorization.empty()
                                         ? "this endpoint needs \"Authorization: Bearer TOKEN\""
                                         : "wrong token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    if (path == "/metrics") {
      if (method != "GET") return method_not_allowed(method, path, "GET");
      HttpReply r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = service.metrics();
      return r;
    }
    if (path == "/streams") {
      if (method == "GET") {
        json list = json::array();
        for (const auto& s : service.streams()) list.push_back(stream_json(s));
        return json_reply(200, list);
      }
      if (method == "POST") return post_stream(service, body);
      return method_not_allowed(method, path, "GET, POST");
    }
    const std::string prefix = "/streams/";
    if (path.rfind(prefix, 0) == 0) {
      const std::string tail = path.substr(prefix.size());
      const int id = parse_id(tail);
      if (method != "GET" && method != "DELETE") {
        return method_not_allowed(method, path, "GET, DELETE");
      }
      if (id < 0) return error_reply(404, "no stream '" + tail + "' (ids are numbers)");
      if (method == "DELETE") {
        if (!service.remove(id)) return error_reply(404, "no stream " + std::to_string(id));
        return json_reply(200, json{{"id", id}, {"removed", true}});
      }
      for (const auto& s : service.streams()) {
        if (s.id == id) return json_reply(200, stream_json(s));
      }
      return error_reply(404, "no stream " + std::to_string(id));
    }
    return error_reply(404, "no such endpoint: " + path + " (try /streams or /metrics)");
  } catch (const std::exception& e) {
    return error_reply(500, e.what());
  } catch (...) {
    return error_reply(500, "unknown error");
  }
}

void parse_listen_address(const std::string& text, std::string* host, int* port) {
  // A bare port binds the loopback address: reaching the endpoint from elsewhere is a choice
  // the address (and --http-token) has to make.
  if (!text.empty() && text.size() <= 5 &&
      text.find_first_not_of("0123456789") == std::string::npos) {
    return parse_listen_address("127.0.0.1:" + text, host, port);
  }
  std::string h;
  int value = -1;  // no default: the port must be given
  if (!autoassign::parse_host_port(text, -1, &h, &value) || value < 0) {
    throw std::invalid_argument("'" + text +
                                "' is not HOST:PORT or PORT, with PORT 0-65535 (e.g. "
                                "127.0.0.1:8080)");
  }
  if (h == "localhost") h = "127.0.0.1";
  GInetAddress* addr = g_inet_address_new_from_string(h.c_str());
  if (!addr) {
    throw std::invalid_argument("'" + h + "' is not a numeric IP address (or localhost)");
  }
  g_object_unref(addr);
  *host = h;
  *port = value;
}

struct HttpServer::Impl {
  Impl(StreamService& s, std::string t) : service(s), token(std::move(t)) {}
  StreamService& service;
  std::string token;
  SoupServer* server = nullptr;
  guint deadline_timer = 0;
  // Requests started and not yet finished or aborted, with the monotonic time (us) by which
  // each must be done (main loop only).
  std::unordered_map<SoupServerMessage*, gint64> active;

  // Every request must keep coming: a client silent for kIdleSeconds in the middle of one (half
  // a header, a body shorter than its Content-Length) is cut off. Without it 300 such sockets
  // stayed open for good, and at the open-files limit the endpoint stopped answering anyone,
  // before any token check. Past kMaxActive requests at once, new ones get a second. A client
  // that is never silent that long (a byte of its headers a second) meets the whole request's
  // limit instead: kRequestSeconds from its first byte to the end of the answer, far more than
  // a 64 KiB request and its answer need on any network.
  static constexpr guint kIdleSeconds = 10;
  static constexpr int kMaxActive = 64;
  static constexpr gint64 kRequestSeconds = 15;
  // Each tracked message holds a reference: libsoup emits request-started when it creates the
  // message, but request-finished or -aborted only once a request line was parsed, so a client
  // that connects and closes (a health check), stalls in its first line, or sends a malformed
  // one, ends with neither; the entry then lives until its deadline, on a message kept alive.
  static void started(SoupServer*, SoupServerMessage* msg, gpointer data) {
    auto* self = static_cast<Impl*>(data);
    if (self->active.emplace(msg, 0).second) g_object_ref(msg);
    self->active[msg] = g_get_monotonic_time() + kRequestSeconds * G_USEC_PER_SEC;
    if (GSocket* socket = soup_server_message_get_socket(msg)) {
      g_socket_set_timeout(socket,
                           static_cast<int>(self->active.size()) > kMaxActive ? 1 : kIdleSeconds);
    }
  }
  static void ended(SoupServer*, SoupServerMessage* msg, gpointer data) {
    if (static_cast<Impl*>(data)->active.erase(msg) > 0) g_object_unref(msg);
  }
  // Once a second: a request past its limit has its connection shut down; libsoup then sees the
  // end of the stream and aborts the request (request-aborted erases it).
  static gboolean enforce_deadlines(gpointer data) {
    auto* self = static_cast<Impl*>(data);
    const gint64 now = g_get_monotonic_time();
    for (auto it = self->active.begin(); it != self->active.end();) {
      if (it->second < now) {
        if (GSocket* socket = soup_server_message_get_socket(it->first)) {
          g_socket_shutdown(socket, TRUE, TRUE, nullptr);  // already closed: a no-op
        }
        g_object_unref(it->first);
        it = self->active.erase(it);
      } else {
        ++it;
      }
    }
    return G_SOURCE_CONTINUE;
  }

  // Before the body is read. libsoup still reads a body it will not use (to keep the
  // connection in step), so a body announced larger than the limit, or one of unannounced
  // length (chunked), is answered at once and read without being kept in memory.
  static void early(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer) {
    SoupMessageHeaders* h = soup_server_message_get_request_headers(msg);
    const SoupEncoding encoding = soup_message_headers_get_encoding(h);
    std::string refused;
    int status = 0;
    if (encoding == SOUP_ENCODING_CONTENT_LENGTH &&
        soup_message_headers_get_content_length(h) > static_cast<goffset>(kMaxRequestBody)) {
      status = 413;
      refused = "request body larger than " + std::to_string(kMaxRequestBody) + " bytes";
    } else if (encoding != SOUP_ENCODING_CONTENT_LENGTH && encoding != SOUP_ENCODING_NONE) {
      status = 411;
      refused = "a request body needs a Content-Length";
    }
    if (status) {
      soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
      send(msg, error_reply(status, refused));
    }
  }

  static void handle(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable*,
                     gpointer data) {
    auto* self = static_cast<Impl*>(data);
    if (soup_server_message_get_status(msg) != 0) return;  // answered by the early handler
    // A C callback: nothing may throw out of it (handle_request does not; the copies below
    // can only fail on memory, which ends the process either way).
    SoupMessageBody* body = soup_server_message_get_request_body(msg);
    std::string text;
    if (body && body->length > 0) {
      GBytes* bytes = soup_message_body_flatten(body);
      gsize size = 0;
      const auto* data_ptr = static_cast<const char*>(g_bytes_get_data(bytes, &size));
      text.assign(data_ptr, size);
      g_bytes_unref(bytes);
    }
    const char* auth =
        soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "Authorization");
    send(msg, handle_request(self->service, soup_server_message_get_method(msg), path ? path : "",
                             text, auth ? auth : "", self->token));
  }

  static void send(SoupServerMessage* msg, const HttpReply& r) {
    SoupMessageHeaders* out = soup_server_message_get_response_headers(msg);
    for (const auto& [name, value] : r.headers) {
      soup_message_headers_replace(out, name.c_str(), value.c_str());
    }
    soup_message_headers_replace(out, "Cache-Control", "no-store");
    // One request per connection. libsoup 3.2 (Debian 12) never notices that a client closed
    // an idle keep-alive connection (fixed upstream in 3.3, commit d20c6601): every curl left
    // a socket in CLOSE_WAIT, one file descriptor leaked per request. A control endpoint
    // scraped every few seconds loses nothing by closing after each answer.
    soup_message_headers_replace(out, "Connection", "close");
    soup_server_message_set_status(msg, static_cast<guint>(r.status), nullptr);
    soup_server_message_set_response(msg, r.content_type.c_str(), SOUP_MEMORY_COPY, r.body.data(),
                                     r.body.size());
  }
};

HttpServer::HttpServer(StreamService& service, std::string token)
    : impl_(new Impl(service, std::move(token))) {}

HttpServer::~HttpServer() {
  if (impl_->deadline_timer) g_source_remove(impl_->deadline_timer);
  for (const auto& entry : impl_->active) g_object_unref(entry.first);
  impl_->active.clear();
  if (impl_->server) {
    soup_server_disconnect(impl_->server);
    g_object_unref(impl_->server);
  }
}

void HttpServer::listen(const std::string& address) {
  std::string host;
  int port = 0;
  parse_listen_address(address, &host, &port);
  GInetAddress* inet = g_inet_address_new_from_string(host.c_str());
  const bool loopback = g_inet_address_get_is_loopback(inet);
  if (!loopback && impl_->token.empty()) {
    g_object_unref(inet);
    throw std::runtime_error("--http " + address +
                             " is reachable from other machines: set --http-token-file (or "
                             "AUTOASSIGN_HTTP_TOKEN) so requests must carry a token");
  }
  impl_->server = soup_server_new("server-header", "autoassign-cameras", nullptr);
  soup_server_add_early_handler(impl_->server, nullptr, &Impl::early, impl_.get(), nullptr);
  soup_server_add_handler(impl_->server, nullptr, &Impl::handle, impl_.get(), nullptr);
  g_signal_connect(impl_->server, "request-started", G_CALLBACK(&Impl::started), impl_.get());
  g_signal_connect(impl_->server, "request-finished", G_CALLBACK(&Impl::ended), impl_.get());
  g_signal_connect(impl_->server, "request-aborted", G_CALLBACK(&Impl::ended), impl_.get());
  impl_->deadline_timer = g_timeout_add_seconds(1, &Impl::enforce_deadlines, impl_.get());
  GSocketAddress* where = g_inet_socket_address_new(inet, static_cast<guint16>(port));
  g_object_unref(inet);
  GError* err = nullptr;
  const gboolean ok =
      soup_server_listen(impl_->server, where, static_cast<SoupServerListenOptions>(0), &err);
  g_object_unref(where);
  if (!ok) {
    const std::string why = err ? err->message : "unknown error";
    if (err) g_error_free(err);
    throw std::runtime_error("cannot listen on " + address + ": " + why);
  }
  GSList* uris = soup_server_get_uris(impl_->server);
  port_ = uris ? g_uri_get_port(static_cast<GUri*>(uris->data)) : port;
  g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
  const bool v6 = host.find(':') != std::string::npos;
  url_ = "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port_) + "/";
}

}  // namespace autoassign::pipelines
