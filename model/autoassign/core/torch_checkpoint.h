// SPDX-License-Identifier: MIT
// Reads PyTorch checkpoints (torch.save, PyTorch 1.6 and later: a zip holding `data.pkl` and one
// raw little-endian record per storage) as data: the pickle is interpreted by a small machine
// that knows dicts, lists, tuples, numbers, strings, `collections.OrderedDict` and the two
// tensor-rebuilding functions torch.save writes, and refuses every other global by name. No
// code runs (Python's pickle calls whatever global a file names; LibTorch 1.13's own
// torch::pickle_load turns OrderedDict, the type of every state_dict, into None). Every
// length, index, shape, stride and storage range is checked against the file. Torch-free, so
// the parser can be fuzzed on its own; checkpoint.h turns the tensors into LibTorch tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace autoassign {

/// Element types of PyTorch storages this reader knows.
enum class TorchDtype { kF32, kF64, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };
size_t torch_dtype_size(TorchDtype dtype);
const char* torch_dtype_name(TorchDtype dtype);  // "float32", ...

/// A tensor of the checkpoint: a view (offset, shape, strides in elements) of a storage record.
struct TorchTensorRef {
  std::string storage;  // the record's key ("0", "1", ...)
  TorchDtype dtype = TorchDtype::kF32;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape, stride;
  int64_t numel() const;
};

/// One value of the pickle.
struct PickleValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kList, kTuple, kDict, kTensor };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                       // kString (UTF-8) and kBytes
  std::vector<const PickleValue*> items;  // kList, kTuple
  std::vector<std::pair<const PickleValue*, const PickleValue*>> entries;  // kDict, in order
  TorchTensorRef tensor;                                                   // kTensor

  /// The value of key `key` of a dict with string keys, or nullptr.
  const PickleValue* get(const std::string& key) const;
  /// "dict", "tensor", ...: for messages.
  const char* kind_name() const;
};

/// A parsed checkpoint. The values live as long as this object.
class TorchCheckpoint {
 public:
  /// Reads the file; throws std::invalid_argument naming the file and what is wrong (a file in
  /// the pre-1.6 format gets one saying so and how to re-save it).
  static TorchCheckpoint load(const std::string& path);
  /// The same from bytes held in memory (tests, fuzzing); `name` is used in messages.
  static TorchCheckpoint parse(std::string bytes, const std::string& name);

  const PickleValue& root() const { return *root_; }
  /// The bytes of a tensor's elements, from its offset to the end of its extent; throws if the
  /// storage record is missing (checked at parse time, so only for foreign refs).
  std::string_view tensor_bytes(const TorchTensorRef& t) const;

  /// The state dict inside: root["state_dict"] (MMDetection), root["model"] (cvpods,
  /// detectron2), or the root itself (torchvision), as (name, tensor) in file order. Throws
  /// if none of these is a dict of tensors, naming the first entry that is not one.
  std::vector<std::pair<std::string, TorchTensorRef>> state_dict() const;

 private:
  struct Record {
    std::string name;
    uint64_t begin = 0, size = 0;
  };
  /// The record "data/STORAGE", or nullptr.
  const Record* record(const std::string& storage) const;
  std::string name_;
  std::string bytes_;
  std::vector<Record> records_;  // the zip's entries under the archive prefix
  std::vector<std::unique_ptr<PickleValue>> arena_;
  const PickleValue* root_ = nullptr;
  friend class PickleMachine;
};

/// Limits of the reader (a checkpoint of a detector holds a few hundred tensors).
constexpr size_t kMaxPickleValues = 1'000'000;
constexpr size_t kMaxTensorDims = 8;

}  // namespace autoassign
