// SPDX-License-Identifier: MIT
// The training state between processes and runs: the resume checkpoint (weights, SGD momentum,
// the weight average, iteration, config, options), rank 0's state broadcast to the others,
// the weight average's update, and a run's start from another model file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "autoassign/infer/modeling/model.h"
#include "autoassign/train/distributed.h"

namespace autoassign {

/// Calls `fn(group, index, parameter, state)` for every parameter of the optimiser, in order;
/// `state` is its SGD momentum state, or null where it has none yet (before its first step),
/// unless `create` makes a zero one. The one walk over SGD's state that checkpoints, resume
/// and the broadcast share (LibTorch 1.13 keys the state by the parameter's TensorImpl).
void for_each_momentum(torch::optim::SGD& opt, bool create,
                       const std::function<void(size_t, size_t, const torch::Tensor&,
                                                torch::optim::SGDParamState*)>& fn);

/// Every parameter and buffer of `from` into `to` (two models of one config).
void copy_weights(AutoAssign& from, AutoAssign& to);

/// TrainOptions::ema after step `n` (1-based): floating-point parameters and buffers (BatchNorm
/// statistics) move towards the model's with d_n = ema x (1 - exp(-n / ramp)); integer buffers
/// (batch counters) are copied.
void update_average(AutoAssign& model, AutoAssign& average, double ema, double ramp, int64_t n);

/// `dir`/checkpoint.pt (a tensor file: "model.", "ema.", "optimizer.G.I.momentum_buffer"
/// tensors, iteration, config and options as metadata) and `dir`/model.pt (the average when
/// there is one, else the model).
void save_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                     int64_t iteration, const nlohmann::json& options_json, AutoAssign* average);

/// Reads `dir`/checkpoint.pt into the model, optimiser and average; returns its iteration.
/// Refuses another config, other options (naming each that differs) or foreign tensors.
int64_t load_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                        const nlohmann::json& options_json, AutoAssign* average);

/// Every rank takes rank 0's weights, buffers and `start` iteration, and on a resume (start > 0)
/// its momentum buffers. Returns the start iteration. Single process: returns `start`.
int64_t broadcast_start(Communicator& comm, AutoAssign& model, torch::optim::SGD& opt,
                        int64_t start, bool resume);

/// Fills `model` from the model file at `path` by tensor name (fine-tuning). Every tensor must
/// exist there with the same shape, except those whose shape follows the number of classes
/// (head.cls_pred.*, center_prior.*): where the class count differs they keep their
/// initialisation, as detection frameworks re-initialise a classifier for new classes. Returns
/// the names left initialised; anything else that does not fit is std::runtime_error naming the
/// file and the tensor.
///
/// `grow`: `model` may be a wider network of the same layout (more channels in any backbone
/// stage, the FPN or the head; BatchNorm or no normalisation, since GroupNorm's groups would
/// change): each tensor takes the file's values in its leading slice; the weights that read
/// the added input channels start at zero and those that produce added channels keep their
/// initialisation, so the grown network computes exactly what the file's did and the added
/// channels start learning from the first step (Net2Net's function-preserving widening, with
/// zeros instead of copies).
std::vector<std::string> init_from_model(AutoAssign& model, const std::string& path,
                                         bool grow = false);

}  // namespace autoassign
