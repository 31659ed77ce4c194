// SPDX-License-Identifier: MIT
// Rules for the fields of an option set (ModelConfig's sections, TrainOptions): a range for a
// number (and for each entry of a list of numbers), a set of choices for a string. A field's
// rule is written in its one row of the set's table; the messages name the field the same way
// everywhere ("head.num_convs must be in [0, 16], got 20"; "schedule 'x' is not one of step,
// cosine").
#pragma once

#include <array>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace autoassign {

struct FieldRule {
  enum class Kind { kAny, kRange, kChoices };
  Kind kind = Kind::kAny;
  double lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;
  const char* choices = "";  ///< "a|b|c"
};
constexpr FieldRule any_value() { return {}; }
/// [lo, hi]
constexpr FieldRule range(double lo, double hi) {
  return {FieldRule::Kind::kRange, lo, hi, false, false, ""};
}
/// (lo, hi]
constexpr FieldRule above(double lo, double hi) {
  return {FieldRule::Kind::kRange, lo, hi, true, false, ""};
}
/// [lo, hi)
constexpr FieldRule below(double lo, double hi) {
  return {FieldRule::Kind::kRange, lo, hi, false, true, ""};
}
constexpr FieldRule one_of(const char* choices) {
  return {FieldRule::Kind::kChoices, 0, 0, false, false, choices};
}

/// The choices of a kChoices rule, in order.
inline std::vector<std::string> rule_choices(const FieldRule& rule) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(rule.choices);
  while (std::getline(in, item, '|')) out.push_back(item);
  return out;
}

/// Throws std::invalid_argument naming `name` when `value` breaks `rule` (NaN breaks every
/// range). Numbers, lists and arrays of numbers (each entry: "name entries"), strings; other
/// types have no rule.
template <typename T>
void check_field(const std::string& name, const T& value, const FieldRule& rule) {
  if (rule.kind == FieldRule::Kind::kAny) return;
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const double v = static_cast<double>(value);
    const bool ok =
        (rule.lo_open ? v > rule.lo : v >= rule.lo) && (rule.hi_open ? v < rule.hi : v <= rule.hi);
    if (!ok) {
      std::ostringstream m;
      m << name << " must be in " << (rule.lo_open ? "(" : "[") << rule.lo << ", " << rule.hi
        << (rule.hi_open ? ")" : "]") << ", got " << v;
      throw std::invalid_argument(m.str());
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    const auto choices = rule_choices(rule);
    std::string list;
    for (const auto& c : choices) {
      if (c == value) return;
      list += (list.empty() ? "" : ", ") + c;
    }
    throw std::invalid_argument(name + " '" + value + "' is not one of " + list);
  } else if constexpr (std::is_same_v<T, std::vector<int>> ||
                       std::is_same_v<T, std::array<float, 3>>) {
    for (const auto& e : value) check_field(name + " entries", e, rule);
  }
}

}  // namespace autoassign
