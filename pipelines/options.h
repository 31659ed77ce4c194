/* SPDX-License-Identifier: MIT */
// Command-line options of the pipeline programs: "--name value" options, "--name" flags and
// positional arguments, with --help. Each program declares what it takes; a bad option or
// value is named on stderr with the usage, exit status 2.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "autoassign/core/default_model.h"
#include "autoassign/core/files.h"
#include "autoassign/core/json.h"
#include "autoassign/core/program_options.h"

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
  /// `header`: the usage lines and what the program does. The options' lines follow it in
  /// --help, each written where the option is registered.
  explicit Options(std::string header) : header_(std::move(header)) {}

  void value(const std::string& name, std::string* out, const std::string& metavar,
             const std::string& help) {
    add(name, metavar, help, [out](const std::string& v) { *out = v; });
  }
  /// A number: the whole text must be one, finite, and within [lo, hi].
  void value(const std::string& name, double* out, const std::string& metavar,
             const std::string& help, double lo = -1e300, double hi = 1e300) {
    add(name, metavar, help, [=](const std::string& v) {
      size_t used = 0;
      double d = 0;
      try {
        d = std::stod(v, &used);
      } catch (const std::out_of_range&) {  // beyond double: outside any range we take
        throw std::out_of_range(range_text(lo, hi));
      }
      if (used != v.size() || !std::isfinite(d)) throw std::invalid_argument("not a number");
      if (d < lo || d > hi) throw std::out_of_range(range_text(lo, hi));
      *out = d;
    });
  }
  /// An integer: the whole text must be one, within [lo, hi].
  void value(const std::string& name, int* out, const std::string& metavar, const std::string& help,
             int lo = std::numeric_limits<int>::min(), int hi = std::numeric_limits<int>::max()) {
    add(name, metavar, help, [=](const std::string& v) {
      size_t used = 0;
      long long i = 0;
      try {
        i = std::stoll(v, &used);
      } catch (const std::out_of_range&) {  // beyond 64 bits: outside any range we take
        throw std::out_of_range(range_text(lo, hi));
      }
      if (used != v.size()) throw std::invalid_argument("not a number");
      if (i < lo || i > hi) throw std::out_of_range(range_text(lo, hi));
      *out = static_cast<int>(i);
    });
  }
  /// One of the options every program shares (autoassign/core/program_options.h).
  template <typename T>
  void value(const ProgramOption& option, T* out) {
    value(option.flag, out, option.value, option.help);
  }
  /// --model FILE; parse() fills in the default model (named in --help) when it is not given.
  void model(std::string* out) {
    model_ = out;
    value(kModelOption.flag, out, kModelOption.value,
          std::string(kModelOption.help) + "\n(default: " + default_model_description() + ")");
  }
  void flag(const std::string& name, bool* out, const std::string& help) {
    flags_[name] = out;
    lines_.push_back({name, "", help});
  }
  /// `name FILE`: the options from a JSON object, read before the command line (which then
  /// overrides them): field "a_b" is option --a-b, its value a string or number as on the
  /// command line, true or false for a flag; `positional_key` an array of the positional
  /// arguments (before the command line's). Checked as the command line is, errors naming
  /// the file and the field.
  void config_file(const std::string& name, const std::string& positional_key,
                   const std::string& help) {
    config_flag_ = name;
    positional_key_ = positional_key;
    lines_.push_back({name, "FILE", help});
  }

  /// The header and one line per option, help continued on indented lines: at its own line
  /// breaks, and at spaces where a line would pass 98 columns (the shared options' help, written
  /// once for every program, is one long line).
  std::string usage() const {
    constexpr size_t kIndent = 26, kWidth = 98 - kIndent;
    std::string u = header_;
    for (const auto& l : lines_) {
      std::string head = "  " + l.name + (l.metavar.empty() ? "" : " " + l.metavar);
      head += std::string(head.size() < kIndent ? kIndent - head.size() : 1, ' ');
      std::vector<std::string> rows;
      std::istringstream paragraphs(l.help);
      for (std::string line; std::getline(paragraphs, line);) {
        while (line.size() > kWidth) {
          const size_t cut = line.rfind(' ', kWidth);
          if (cut == std::string::npos || cut == 0) break;
          rows.push_back(line.substr(0, cut));
          line.erase(0, cut + 1);
        }
        rows.push_back(line);
      }
      for (size_t i = 0; i < rows.size(); ++i) {
        u += (i == 0 ? head : std::string(kIndent, ' ')) + rows[i] + "\n";
      }
      if (rows.empty()) u += head + "\n";
    }
    return u;
  }

  /// -1: go on; otherwise the exit status to return (0 after --help, 2 on a bad command line).
  /// Positional arguments go to `positional`, or are an error when it is null.
  int parse(int argc, char** argv, std::vector<std::string>* positional = nullptr) const {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::fputs(usage().c_str(), stdout);
        return 0;
      }
    }
    if (!config_flag_.empty()) {
      for (int i = 1; i < argc; ++i) {
        if (argv[i] != config_flag_) continue;
        if (i + 1 >= argc) return fail(config_flag_ + " needs a value");
        if (const int status = apply_config(argv[i + 1], positional); status >= 0) return status;
      }
    }
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == config_flag_ && !k.empty()) {
        ++i;
        continue;
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
      if (const int status = set(v->second, k, value); status >= 0) return status;
    }
    if (model_ && model_->empty()) *model_ = default_model().path;
    return -1;
  }

  int fail(const std::string& what) const {
    std::fprintf(stderr, "%s\n%s", what.c_str(), usage().c_str());
    return 2;
  }

  /// The options of a config file (config_file()); -1, or 2 after naming what is wrong.
  int apply_config(const std::string& path, std::vector<std::string>* positional) const {
    nlohmann::json j;
    try {
      j = parse_json_strict(read_file_capped(path, kMaxConfigFileBytes, "config file"), path, 2);
    } catch (const std::exception& e) {
      return fail(e.what());
    }
    if (!j.is_object()) return fail(path + ": not a JSON object of options");
    for (const auto& [key, value] : j.items()) {
      const std::string field = path + ": field '" + sanitize_key(key) + "'";
      if (key == positional_key_ && positional) {
        if (!value.is_array()) return fail(field + " must be an array of strings");
        for (const auto& v : value) {
          if (!v.is_string()) return fail(field + " must be an array of strings");
          positional->push_back(v.get<std::string>());
        }
        continue;
      }
      std::string name = "--" + key;
      for (auto& c : name) c = c == '_' ? '-' : c;
      if (name == config_flag_) return fail(field + ": a config file cannot name another");
      if (auto f = flags_.find(name); f != flags_.end()) {
        if (!value.is_boolean()) return fail(field + " must be true or false");
        *f->second = value.get<bool>();
        continue;
      }
      const auto v = values_.find(name);
      if (v == values_.end()) return fail(field + ": no such option");
      std::string text;
      if (value.is_string()) {
        text = value.get<std::string>();
      } else if (value.is_number_integer()) {
        text = std::to_string(value.get<long long>());
      } else if (value.is_number()) {
        text = value.dump();
      } else {
        return fail(field + " must be a string or a number");
      }
      if (const int status = set(v->second, field, text); status >= 0) return status;
    }
    return -1;
  }

 private:
  struct Line {
    std::string name, metavar, help;
  };
  template <typename N>
  static std::string range_text(N lo, N hi) {
    std::ostringstream m;
    m << "[" << lo << ", " << hi << "]";
    return m.str();
  }
  void add(const std::string& name, const std::string& metavar, const std::string& help,
           std::function<void(const std::string&)> set) {
    values_[name] = std::move(set);
    lines_.push_back({name, metavar, help});
  }

  // One value through its setter: -1, or 2 after naming `what` and why (out of range, or not a
  // number), for the command line and a config file alike.
  int set(const std::function<void(const std::string&)>& setter, const std::string& what,
          const std::string& text) const {
    try {
      setter(text);
    } catch (const std::out_of_range& e) {
      return fail(what + " must be in " + e.what() + ", got " + text);
    } catch (const std::exception&) {
      return fail(what + ": not a number: '" + text + "'");
    }
    return -1;
  }
  // Keys as the user wrote them, printable: control characters as '?'.
  static std::string sanitize_key(const std::string& k) {
    std::string s = k.substr(0, 64);
    for (auto& c : s) c = (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    return s;
  }

  std::string header_;
  std::string config_flag_, positional_key_;
  std::string* model_ = nullptr;
  std::vector<Line> lines_;
  std::map<std::string, std::function<void(const std::string&)>> values_;
  std::map<std::string, bool*> flags_;
};

}  // namespace autoassign::pipelines
