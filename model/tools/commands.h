// SPDX-License-Identifier: MIT
// Subcommands of the autoassign tool; each registers its options on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

#include "autoassign/dataset.h"

namespace autoassign::cli {

void add_info(CLI::App& app);
void add_init(CLI::App& app);
void add_bench(CLI::App& app);
void add_train(CLI::App& app);
void add_detect(CLI::App& app);
void add_eval(CLI::App& app);

/// --precision's help, the same for detect, eval and the pipeline programs.
inline constexpr const char* kPrecisionHelp =
    "network arithmetic: auto (bf16 on CPUs with AMX or AVX512-BF16, fp32 elsewhere), fp32, "
    "bf16, fp16 (CUDA); box decoding, scores and NMS stay fp32";

/// Model config from exactly one of --preset / --config (or a default preset).
struct ModelSource {
  std::string preset;
  std::string config;
  std::string model;
};

/// Dataset flags shared by train and eval.
struct DataOptions {
  std::string widerface, widerface_split = "train", coco, coco_images, voc, class_map;
  int max_images = 0;
};
void add_data_options(CLI::App& cmd, DataOptions& d);
/// Loads and concatenates the datasets the flags name; `command` names the subcommand in errors.
Dataset load_datasets(const DataOptions& d, const std::string& command);

}  // namespace autoassign::cli
