/* SPDX-License-Identifier: MIT */
// Prometheus text exposition (format 0.0.4) for autoassign-cameras' GET /metrics: a latency
// histogram safe to fill from streaming threads, and a writer that emits each family's HELP
// and TYPE once, with label values escaped as the format requires.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace autoassign::pipelines {

/// Observations in seconds, counted into fixed upper bounds (Prometheus "le" buckets).
class LatencyHistogram {
 public:
  // 2 ms to 5 s: a CPU face model takes 5-50 ms a frame, an R-50 on two cores up to seconds.
  static constexpr std::array<double, 12> kBounds = {0.002, 0.005, 0.01, 0.02, 0.035, 0.05,
                                                     0.1,   0.2,   0.35, 0.5,  1.0,   5.0};
  struct Snapshot {
    std::array<uint64_t, kBounds.size()> cumulative{};  // observations <= kBounds[i]
    uint64_t count = 0;
    double sum = 0;
  };

  void observe(double seconds) {
    if (!(seconds >= 0) || !std::isfinite(seconds)) return;
    std::lock_guard<std::mutex> lock(lock_);
    for (size_t i = 0; i < kBounds.size(); ++i) {
      if (seconds <= kBounds[i]) {
        ++counts_[i];
        break;
      }
    }
    ++count_;
    sum_ += seconds;
  }
  Snapshot snapshot() const {
    std::lock_guard<std::mutex> lock(lock_);
    Snapshot s;
    uint64_t running = 0;
    for (size_t i = 0; i < kBounds.size(); ++i) s.cumulative[i] = running += counts_[i];
    s.count = count_;
    s.sum = sum_;
    return s;
  }

 private:
  mutable std::mutex lock_;
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

/// A label value as the text format wants it: backslash, double quote and newline escaped.
inline std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Exposition {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  /// Declares a family and starts its group: the format wants each family's HELP, TYPE and
  /// samples together, so a family declared twice, or a sample of any family but the current
  /// one, is a std::logic_error (a bug of the writer's caller, caught by the tests).
  void family(const std::string& name, const std::string& type, const std::string& help) {
    if (!declared_.insert(name).second) {
      throw std::logic_error("metric family " + name + " declared twice");
    }
    current_ = name;
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  void sample(const std::string& name, const Labels& labels, double value) {
    if (current_.empty() || (name != current_ && name.rfind(current_ + "_", 0) != 0)) {
      throw std::logic_error("metric " + name + " written outside its family's group (the " +
                             "current family is '" + current_ + "')");
    }
    out_ << name << labels_text(labels) << ' ' << number(value) << '\n';
  }
  void histogram(const std::string& name, const Labels& labels,
                 const LatencyHistogram::Snapshot& s) {
    for (size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
      Labels with = labels;
      with.emplace_back("le", number(LatencyHistogram::kBounds[i]));
      sample(name + "_bucket", with, static_cast<double>(s.cumulative[i]));
    }
    Labels inf = labels;
    inf.emplace_back("le", "+Inf");
    sample(name + "_bucket", inf, static_cast<double>(s.count));
    sample(name + "_sum", labels, s.sum);
    sample(name + "_count", labels, static_cast<double>(s.count));
  }
  std::string text() const { return out_.str(); }

  static std::string number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
      return std::to_string(static_cast<long long>(v));
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
  }

 private:
  static std::string labels_text(const Labels& labels) {
    if (labels.empty()) return "";
    std::string t = "{";
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) t += ',';
      t += labels[i].first + "=\"" + label_value(labels[i].second) + '"';
    }
    return t + '}';
  }
  std::ostringstream out_;
  std::set<std::string> declared_;
  std::string current_;
};

}  // namespace autoassign::pipelines
