// SPDX-License-Identifier: MIT
// The pipeline programs' --config files (pipelines/options.h, as autoassign-cameras and its
// packaged service read them) on any bytes: apply_config either accepts the file or refuses it
// (status 2, the reason on stderr); it never crashes, hangs or throws. An accepted file left
// every setting inside the range its option declares and no more sources than the file has
// room for strings (the rules checked again here, independently of the setters).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common.h"
#include "options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = autoassign::fuzz::scratch() + "/cameras.json";
  autoassign::fuzz::write(path, data, size);
  // The kinds of option autoassign-cameras registers: strings, a bounded real, bounded
  // integers (one allowing -1), flags, and the sources array.
  std::string model, output = "-", http;
  double threshold = 0.5;
  int threads = 0, retries = -1, max_streams = 16;
  bool track = false, drop = false;
  autoassign::pipelines::Options o("usage: fuzz");
  o.config_file("--config", "sources", "settings");
  o.value("--model", &model, "FILE", "model file");
  o.value("--output", &output, "DIR", "output");
  o.value("--http", &http, "ADDR", "endpoint");
  o.value("--threshold", &threshold, "T", "score threshold", 0.0, 1.0);
  o.value("--threads", &threads, "N", "threads", 0, 256);
  o.value("--retries", &retries, "N", "retries", -1, 1000000);
  o.value("--max-streams", &max_streams, "N", "streams", 1, 1024);
  o.flag("--track", &track, "track");
  o.flag("--drop-when-busy", &drop, "drop");
  std::vector<std::string> sources;
  // Refusals print the reason and the usage: not what is fuzzed here.
  std::FILE* saved = stderr;
  static std::FILE* devnull = std::fopen("/dev/null", "w");
  stderr = devnull;
  const int status = o.apply_config(path, &sources);
  stderr = saved;
  if (status != -1 && status != 2) std::abort();
  if (status == -1) {
    if (!(threshold >= 0.0 && threshold <= 1.0) || !std::isfinite(threshold)) std::abort();
    if (threads < 0 || threads > 256 || retries < -1 || max_streams < 1 || max_streams > 1024) {
      std::abort();
    }
    // Each source is a string of the file's "sources" array: two quotes at least.
    if (sources.size() * 2 > size) std::abort();
  }
  return 0;
}
