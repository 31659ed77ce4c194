// SPDX-License-Identifier: MIT
// Weight averaging of model files ("model soups", Wortsman et al. 2022): the weighted mean of
// the parameters and buffers of several runs of one architecture, typically cycles fine-tuned
// from the same start with other seeds or recipes. Such runs lie in one basin, so their mean
// is a model too, and one whose errors from a run's draw of seed and data order partly cancel;
// it costs nothing at inference (one network, same speed).
#pragma once

#include <string>
#include <vector>

#include "autoassign/infer/modeling/model.h"

namespace autoassign {

/// The weighted mean of the model files `paths` (at least two), weights `weights` (one per
/// file, finite and > 0, normalised here; empty = equal). Floating-point tensors are averaged
/// in double precision; integer buffers (BatchNorm's batch counters) are taken from the first
/// file, as is the post-processing. Throws std::invalid_argument naming the file when the
/// files' architectures (the config but its post-processing) differ, when a weight is bad, or
/// when a tensor of a file is not finite; ModelFileError when a file cannot be read.
AutoAssign average_models(const std::vector<std::string>& paths, std::vector<double> weights = {});

}  // namespace autoassign
