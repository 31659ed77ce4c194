// SPDX-License-Identifier: MIT
// The on-disk container of model files and training checkpoints: the safetensors layout
// (https://huggingface.co/docs/safetensors), which is data only. An 8-byte little-endian
// header length N, N bytes of JSON naming each tensor's dtype, shape and byte range, and the
// raw little-endian tensor bytes. Reading runs no code and trusts nothing: every length,
// shape and offset is checked before a byte of tensor data is touched. Torch-free, so the
// parser can be fuzzed on its own.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace autoassign {

/// The element types this project writes and reads ("F32", "I64", "BF16" in the header).
enum class TensorDtype { kF32, kI64, kBF16 };
size_t dtype_size(TensorDtype dtype);
const char* dtype_name(TensorDtype dtype);

struct TensorEntry {
  std::string name;
  TensorDtype dtype = TensorDtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
  int64_t numel() const;
};

struct TensorFileHeader {
  std::map<std::string, std::string> metadata;  // the "__metadata__" object (strings only)
  std::vector<TensorEntry> tensors;             // in data order
  uint64_t data_offset = 0;                     // file offset of the data section: 8 + N
  uint64_t data_size = 0;
  /// The entry called `name`, or nullptr.
  const TensorEntry* find(const std::string& name) const;
};

/// Longest header read (the JSON part); safetensors itself stops at 100 MB.
constexpr uint64_t kMaxTensorHeaderBytes = 16u << 20;

/// Header length N from the first 8 bytes. Throws std::invalid_argument when N exceeds
/// kMaxTensorHeaderBytes or the file (`file_size` bytes) cannot hold 8 + N bytes.
uint64_t tensor_header_length(const char first8[8], uint64_t file_size);

/// Parses and checks the JSON header of a file of `file_size` bytes: a JSON object, no
/// duplicate keys; each tensor entry has exactly dtype, shape and data_offsets, a known dtype,
/// a shape of at most 8 non-negative dimensions, and a byte range of numel x element size;
/// the ranges tile the data section [0, file_size - 8 - N) with no gap and no overlap;
/// "__metadata__" maps strings to strings. Throws std::invalid_argument saying what is wrong.
TensorFileHeader parse_tensor_header(std::string_view json, uint64_t file_size);

/// parse_tensor_header over a whole file held in memory (tests, fuzzing).
TensorFileHeader parse_tensor_file(std::string_view bytes);

/// The 8-byte length and JSON header for these entries (begin/end filled in, in order, from
/// each entry's shape and dtype), padded with spaces so the data starts 8-byte aligned.
std::string tensor_file_prefix(const std::map<std::string, std::string>& metadata,
                               std::vector<TensorEntry>& entries);

}  // namespace autoassign
