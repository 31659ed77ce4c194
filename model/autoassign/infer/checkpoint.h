// SPDX-License-Identifier: MIT
// The model file (format version 2): a safetensors file (tensor_file.h), data only. Its
// "__metadata__" holds "format" = kModelFormatTag, "format_version" = "2" and "config" (the
// ModelConfig as JSON); its tensors are the model's parameters and buffers by their module
// names. Loading reads the config, checks it (ModelConfig::validate), builds the network from
// it, and then requires every parameter and buffer in the file with exactly the dtype and
// shape the config implies, and nothing else, before reading a byte of weights. Every failure
// names the file and the problem. Version 1 (a LibTorch archive, whose loading can run
// TorchScript) is read only by load_legacy_model, for `autoassign convert`.
#pragma once

#include <fstream>
#include <map>
#include <string>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/core/tensor_file.h"
#include "autoassign/core/torch_checkpoint.h"
#include "autoassign/infer/modeling/model.h"

namespace autoassign {

constexpr const char* kModelFormatTag = "autoassign-gst model";
constexpr int64_t kModelFormatVersion = 2;

/// Writes `model` (not fused for inference) with its config; atomic (temp file + rename).
void save_model(const std::string& path, AutoAssign& model);
/// Reads a model file; throws ModelFileError (types.h) naming the path and what is wrong.
AutoAssign load_model(const std::string& path, const torch::Device& device = torch::kCPU);
/// Only the config of a model file (same checks as load_model, weights not read).
ModelConfig read_model_config(const std::string& path);
/// Reads a version-1 model file (a LibTorch archive). Loading such a file runs the TorchScript
/// inside it: only for files the user trusts, converted on purpose (`autoassign convert`).
AutoAssign load_legacy_model(const std::string& path);

/// Writes named tensors (fp32, int64 or bf16; any device) and string metadata as a tensor
/// file, atomically. Names must be unique.
void write_tensor_file(const std::string& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

/// An open tensor file whose header has been read and checked (tensor_file.h).
class TensorFileReader {
 public:
  /// Throws ModelFileError: kNotFound, kUnreadable, kCorrupt (naming the header problem), or
  /// kVersion for a LibTorch archive (the version-1 format).
  explicit TensorFileReader(const std::string& path);
  const TensorFileHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  /// The tensor `name`, which must have exactly this dtype and shape (ModelFileError naming
  /// the tensor otherwise); read from the file now.
  torch::Tensor read(const std::string& name, torch::ScalarType dtype, at::IntArrayRef shape);

 private:
  std::string path_;
  std::ifstream in_;
  TensorFileHeader header_;
};

/// Fills every parameter and buffer of `module` from `reader`'s tensors called prefix + name;
/// throws ModelFileError naming a missing or mis-shaped tensor. Returns the names read.
std::vector<std::string> read_module_tensors(TensorFileReader& reader, torch::nn::Module& module,
                                             const std::string& prefix = "");
/// The parameters and buffers of `module`, named prefix + name, for write_tensor_file.
std::vector<std::pair<std::string, torch::Tensor>> module_tensors(torch::nn::Module& module,
                                                                  const std::string& prefix = "");

/// A tensor of a PyTorch checkpoint (torch_checkpoint.h) as a LibTorch tensor: a contiguous
/// copy in the dtype it was saved in. The view was checked against its storage when parsed.
torch::Tensor torch_tensor(const TorchCheckpoint& checkpoint, const TorchTensorRef& ref);

}  // namespace autoassign
