// SPDX-License-Identifier: MIT
// The routes of autoassign-cameras' HTTP endpoint (handle_request) on any request: the input is
// split into method, path, Authorization header and body at its first three newlines. Whatever
// comes in, the answer is one of the statuses the routes document, its body valid JSON (or the
// Prometheus text for /metrics), and a request without the token never reaches the service.
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "common.h"
#include "http_api.h"

namespace {

class Service : public autoassign::pipelines::StreamService {
 public:
  bool touched = false;
  std::vector<autoassign::pipelines::StreamInfo> streams() override {
    touched = true;
    autoassign::pipelines::StreamInfo s;
    s.id = 0;
    s.uri = "test";
    s.state = "running";
    return {s};
  }
  int add(const std::string& uri) override {
    touched = true;
    if (uri.size() % 3 == 0) throw autoassign::pipelines::BadSource("refused: " + uri);
    if (uri.size() % 3 == 1) throw autoassign::pipelines::TooManyStreams("full");
    return 7;
  }
  bool remove(int id) override {
    touched = true;
    return id == 0;
  }
  std::string metrics() override {
    touched = true;
    return "# HELP x y\n# TYPE x gauge\nx 1\n";
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in = autoassign::fuzz::text(data, size);
  std::string part[4];
  for (int i = 0; i < 3; ++i) {
    const size_t nl = in.find('\n');
    part[i] = in.substr(0, nl);
    in = nl == std::string::npos ? "" : in.substr(nl + 1);
  }
  part[3] = in;
  Service service;
  // Odd sizes: the token is required, and part[2] is the Authorization header.
  const std::string token = size % 2 ? "s3cret" : "";
  const auto reply =
      autoassign::pipelines::handle_request(service, part[0], part[1], part[3], part[2], token);
  static const std::set<int> statuses = {200, 201, 400, 401, 404, 405, 411, 413, 429, 500};
  if (!statuses.count(reply.status)) std::abort();
  if (!token.empty() && part[2] != "Bearer " + token && (reply.status != 401 || service.touched)) {
    std::abort();  // without the token: 401, and the service is never reached
  }
  const bool metrics = reply.status == 200 && reply.body.rfind("# HELP", 0) == 0;
  if (!metrics && nlohmann::json::parse(reply.body, nullptr, false).is_discarded()) std::abort();
  return 0;
}
