// SPDX-License-Identifier: MIT
#include "autoassign/train/engine/options.h"

#include <stdexcept>

namespace autoassign {

void validate_train_options(TrainOptions& o, const ModelConfig& config) {
  // The config's own checks first (bounds, refused options such as backbone.reparam).
  config.validate();
  for_each_train_option(
      o, [](const TrainOptionSpec& s, const auto& value) { check_field(s.name, value, s.check); });
  // Rules between options.
  if (o.output_dir.empty()) throw std::invalid_argument("an output directory is required");
  if (o.crop_max < o.crop_min) throw std::invalid_argument("crop_max must be at least crop_min");
  if (o.crop_max > 1 && config.input.resize != "fit")
    throw std::invalid_argument("crop_max > 1 needs a \"fit\" input");
  if (o.init_grow && o.init.empty()) throw std::invalid_argument("init_grow needs an init model");
  // Derived, once everything it derives from is checked.
  if (o.schedule == "step" && o.steps.empty()) {
    o.steps = {o.iterations * 2 / 3, o.iterations * 8 / 9};
  }
}

nlohmann::json train_options_to_json(const TrainOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  for_each_train_option(o, [&](const TrainOptionSpec& s, const auto& value) {
    if (s.role == OptionRole::kComputes) j[s.name] = value;
  });
  return j;
}

}  // namespace autoassign
