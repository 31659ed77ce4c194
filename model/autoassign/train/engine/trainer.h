// SPDX-License-Identifier: MIT
// Training: a short step loop (batch, forward, AutoAssign loss, backward, SGD step) and the
// hooks around it (learning-rate schedule, weight average, checkpoints and snapshots, log and
// progress, step timing), detectron2's train loop and hooks in shape. Data-parallel across
// processes through c10d. This header is the trainer's whole API.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autoassign/core/config.h"
#include "autoassign/data/dataset.h"
#include "autoassign/train/data/batches.h"
#include "autoassign/train/distributed.h"
#include "autoassign/train/engine/hooks.h"
#include "autoassign/train/engine/options.h"
#include "autoassign/train/engine/state.h"

namespace autoassign {

/// Set by SIGINT/SIGTERM handlers the CLI installs: the trainer checkpoints and returns.
extern std::atomic<bool> g_stop_training;

/// Trains `config` on `dataset`; `extra_hooks` run after the built-in ones at each point (a
/// distillation term enters here: TrainHook::add_losses).
TrainResult train(const ModelConfig& config, const Dataset& dataset, const TrainOptions& options,
                  Communicator& comm,
                  const std::vector<std::shared_ptr<TrainHook>>& extra_hooks = {});

}  // namespace autoassign
