// SPDX-License-Identifier: MIT
#include "autoassign/train/engine/options.h"

#include <stdexcept>

#include "autoassign/core/files.h"

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
  if (o.teacher.empty()) {
    if (o.teacher_ignore > 0) throw std::invalid_argument("teacher_ignore needs a teacher");
    if (o.distill_raise_min_size > 0) {
      throw std::invalid_argument("distill_raise_min_size needs a teacher");
    }
  } else {
    if (const auto problem = regular_file_problem(o.teacher); !problem.empty()) {
      throw std::invalid_argument("teacher " + o.teacher + ": " + problem);
    }
    if (config.num_classes != 1) {
      throw std::invalid_argument(
          "teacher: a face teacher teaches a single-class model (this "
          "one has num_classes " +
          std::to_string(config.num_classes) + ")");
    }
    if (o.distill_raise_min_size > 0 && o.distill_objects != "suppress") {
      throw std::invalid_argument(
          "distill_raise_min_size works with distill_objects \"suppress\" (this run has \"" +
          o.distill_objects + "\")");
    }
    if (o.distill_weight == 0 && o.teacher_ignore == 0) {
      throw std::invalid_argument(
          "teacher: with distill_weight 0 and no teacher_ignore it would change nothing");
    }
  }
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
