/* SPDX-License-Identifier: MIT */
// Command-line options of the pipeline programs: "--name value" options, "--name" flags and
// positional arguments, with --help. Each program declares what it takes; a bad option or
// value is named on stderr with the usage, exit status 2.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace autoassign::pipelines {

/// A value quoted for gst_parse_launch: the parser reads it as one string whatever it holds
/// (spaces, '!', '=', quotes), so a file name or URL cannot add elements or properties.
inline std::string quote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

class Options {
 public:
  explicit Options(std::string usage) : usage_(std::move(usage)) {}

  void value(const std::string& name, std::string* out) {
    values_[name] = [out](const std::string& v) { *out = v; };
  }
  void value(const std::string& name, double* out) {
    values_[name] = [out](const std::string& v) { *out = std::stod(v); };
  }
  void value(const std::string& name, int* out) {
    values_[name] = [out](const std::string& v) { *out = std::stoi(v); };
  }
  void flag(const std::string& name, bool* out) { flags_[name] = out; }

  /// -1: go on; otherwise the exit status to return (0 after --help, 2 on a bad command line).
  /// Positional arguments go to `positional`, or are an error when it is null.
  int parse(int argc, char** argv, std::vector<std::string>* positional = nullptr) const {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::fputs(usage_.c_str(), stdout);
        return 0;
      }
      if (auto f = flags_.find(k); f != flags_.end()) {
        *f->second = true;
        continue;
      }
      if (k.rfind("--", 0) != 0 && positional) {
        positional->push_back(k);
        continue;
      }
      const auto v = values_.find(k);
      if (v == values_.end()) return fail("unknown option " + k);
      if (i + 1 >= argc) return fail(k + " needs a value");
      const std::string value = argv[++i];
      try {
        v->second(value);
      } catch (const std::exception&) {
        return fail(k + ": not a number: '" + value + "'");
      }
    }
    return -1;
  }

  int fail(const std::string& what) const {
    std::fprintf(stderr, "%s\n%s", what.c_str(), usage_.c_str());
    return 2;
  }

 private:
  std::string usage_;
  std::map<std::string, std::function<void(const std::string&)>> values_;
  std::map<std::string, bool*> flags_;
};

}  // namespace autoassign::pipelines
