// SPDX-License-Identifier: MIT
// The model file: one LibTorch archive holding a format tag and version, the ModelConfig as
// JSON, and the weights. Loading names the file and the problem on every failure.
#pragma once

#include <string>

#include <torch/torch.h>

#include "autoassign/config.h"
#include "autoassign/model.h"

namespace autoassign {

constexpr const char* kModelFormatTag = "autoassign-gst model";
constexpr int64_t kModelFormatVersion = 1;

/// Writes `model` (not fused for inference) with its config; atomic (temp file + rename).
void save_model(const std::string& path, AutoAssign& model);
/// Reads a model file; throws ModelFileError (types.h) naming the path and what is wrong.
AutoAssign load_model(const std::string& path, const torch::Device& device = torch::kCPU);
/// Only the config of a model file (same checks as load_model, weights not materialised).
ModelConfig read_model_config(const std::string& path);

}  // namespace autoassign
