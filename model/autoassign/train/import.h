// SPDX-License-Identifier: MIT
// Imports published PyTorch checkpoints into this library's model: MMDetection's and the
// authors' (cvpods) AutoAssign R-50 FPN, and torchvision ResNet ImageNet weights (backbone
// only, for fine-tuning). The checkpoint is read as data (torch_checkpoint.h); every key is
// renamed to the library's parameter it holds, every parameter of the model must be filled
// with a tensor of its exact shape, and every key of the checkpoint must be used: anything
// else is an error naming the key (with allow_missing, parameters the checkpoint does not hold
// keep their initialisation and are listed). Where the published model differs from the preset
// in constants (pixel mean, colour order, classes), the config written says so, so the
// imported model computes what the published one computes.
#pragma once

#include <string>
#include <vector>

#include "autoassign/core/config.h"
#include "autoassign/infer/modeling/model.h"

namespace autoassign {

enum class ImportSource { kMmdet, kCvpods, kTorchvision };
/// "mmdet", "cvpods" or "torchvision"; throws std::invalid_argument otherwise.
ImportSource parse_import_source(const std::string& name);

struct ImportOptions {
  ImportSource from = ImportSource::kMmdet;
  /// The architecture to fill: the r50-fpn preset unless given (--config).
  ModelConfig config = ModelConfig::preset("r50-fpn");
  /// Class names (--classes); COCO's 80 (the preset's) when empty and the head has 80 classes.
  std::vector<std::string> class_names;
  /// Parameters the checkpoint lacks keep their initialisation (backbone-only imports).
  bool allow_missing = false;
  /// postprocess.order of the written model: "" = the source's own ("mmdet" for MMDetection's
  /// checkpoints, whose published AP was measured with it; "cvpods" otherwise).
  std::string post;
};

struct ImportReport {
  ModelConfig config;                // as written into the model
  size_t keys = 0;                   // in the checkpoint's state dict
  std::vector<std::string> dropped;  // keys with no counterpart by design (BN counters, fc)
  std::vector<std::string> left_initialised;  // model tensors the checkpoint did not fill
  std::vector<std::string> notes;             // what a user should know (e.g. torchvision stride)
};

/// The library name a checkpoint key maps to ("" = dropped by design), and for the level
/// scales its level in *level (else -1). Throws std::invalid_argument for a key the source
/// does not have.
std::string import_key(ImportSource from, const std::string& key, int* level);

/// The inverse: the checkpoint key of `from`'s layout that fills the library tensor `name`, for
/// messages about what a checkpoint lacks ("" where no key of that layout fills it, such as the
/// heads in a torchvision backbone). Checked against import_key: it maps back to `name`.
std::string source_key(ImportSource from, const std::string& name);

/// Builds the model and fills it from the checkpoint at `path`.
AutoAssign import_checkpoint(const std::string& path, const ImportOptions& options,
                             ImportReport* report);

}  // namespace autoassign
