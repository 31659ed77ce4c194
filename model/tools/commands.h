// SPDX-License-Identifier: MIT
// Subcommands of the autoassign tool; each registers its options on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

#include "autoassign/core/program_options.h"
#include "autoassign/data/dataset.h"

namespace autoassign::cli {

void add_info(CLI::App& app);
void add_init(CLI::App& app);
void add_bench(CLI::App& app);
void add_train(CLI::App& app);
void add_detect(CLI::App& app);
void add_eval(CLI::App& app);

/// One of the options every program shares (autoassign/core/program_options.h), its value
/// shown as the default.
template <typename T>
CLI::Option* add_shared_option(CLI::App& cmd, const ProgramOption& option, T& value) {
  return cmd.add_option(option.flag, value, option.help)->capture_default_str();
}

/// --model FILE for the commands that run a model, not required: the default model
/// (autoassign/core/default_model.h) when not given, named in the help.
CLI::Option* add_model_option(CLI::App& cmd, std::string& value);

/// Model config from exactly one of --preset / --config (or a default preset).
struct ModelSource {
  std::string preset;
  std::string config;
  std::string model;
};

/// Dataset flags shared by train and eval.
/// The dataset flags (--widerface, --coco, --voc, ...) of train and eval, into `d`.
void add_data_options(CLI::App& cmd, DatasetSources& d);
/// load_datasets(d), its refusals as CLI validation errors naming `command`.
Dataset load_datasets(const DatasetSources& d, const std::string& command);

}  // namespace autoassign::cli
