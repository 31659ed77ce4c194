// SPDX-License-Identifier: MIT
// Subcommands of the autoassign tool; each registers its options on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace autoassign::cli {

void add_info(CLI::App& app);
void add_init(CLI::App& app);
void add_bench(CLI::App& app);
void add_train(CLI::App& app);

/// Model config from exactly one of --preset / --config (or a default preset).
struct ModelSource {
  std::string preset;
  std::string config;
  std::string model;
};

}  // namespace autoassign::cli
