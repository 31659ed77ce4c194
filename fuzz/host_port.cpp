// SPDX-License-Identifier: MIT
// The network-address splitter (parse_host_port: MQTT addresses, --http) and the MQTT publish
// topic check on any text: an accepted address has a non-empty host without the port's colon
// and a port in 0..65535 whose digits are in the text; an accepted topic is 1..65535 bytes of
// valid UTF-8 with no wildcard and no NUL (the rules written out again here, independently).
#include <cstdlib>

#include "autoassign/core/types.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s = autoassign::fuzz::text(data, size);
  std::string host;
  int port = -1;
  if (autoassign::parse_host_port(s, 1883, &host, &port)) {
    if (host.empty() || port < 0 || port > 65535) std::abort();
    if (s.find(host) == std::string::npos) std::abort();
    if (port != 1883 && s.find(std::to_string(port)) == std::string::npos) std::abort();
  }
  if (autoassign::mqtt_publish_topic_problem(s).empty()) {
    bool changed = false;
    autoassign::sanitize_utf8(s, &changed);
    if (s.empty() || s.size() > 65535 || s.find_first_of("+#") != std::string::npos ||
        s.find('\0') != std::string::npos || changed) {
      std::abort();
    }
  }
  return 0;
}
