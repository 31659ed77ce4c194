// SPDX-License-Identifier: MIT
#include "autoassign/infer/checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "autoassign/core/files.h"
#include "autoassign/core/types.h"

namespace autoassign {
namespace {

using Kind = ModelFileError::Kind;

// First line of a c10::Error, without LibTorch's C++ backtrace.
std::string short_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  const auto nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

// A model file is read by seeking, so it must be a regular file: a FIFO would block the
// open() below forever (and with it `info`, the element's start or a reload), /dev/zero never
// ends. stat() looks without opening.
void check_openable(const std::string& path) {
  FileError::Kind kind{};
  const std::string problem = regular_file_problem(path, &kind);
  if (!problem.empty()) {
    throw ModelFileError(kind == FileError::Kind::kNotFound ? Kind::kNotFound : Kind::kUnreadable,
                         path, problem);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(Kind::kUnreadable, path, "cannot be opened for reading");
}

struct OpenedArchive {
  torch::serialize::InputArchive archive;
  ModelConfig config;
};

// Version 1 (a LibTorch archive), for load_legacy_model only: opens the archive and checks
// tag, version and config, in that order, so that the message says the first thing that is
// wrong.
void open_archive(const std::string& path, OpenedArchive& out) {
  check_openable(path);
  try {
    out.archive.load_from(path);
  } catch (const c10::Error& e) {
    throw ModelFileError(
        Kind::kCorrupt, path,
        "not a model archive (truncated, or not a LibTorch archive): " + short_message(e));
  }
  c10::IValue tag, version, config;
  if (!out.archive.try_read("format", tag) || !tag.isString() ||
      tag.toStringRef() != kModelFormatTag) {
    throw ModelFileError(Kind::kCorrupt, path,
                         "a LibTorch archive but not an autoassign model (field 'format' "
                         "missing or not '" +
                             std::string(kModelFormatTag) + "')");
  }
  if (!out.archive.try_read("format_version", version) || !version.isInt()) {
    throw ModelFileError(Kind::kCorrupt, path, "field 'format_version' missing or not an integer");
  }
  if (version.toInt() != 1) {
    throw ModelFileError(Kind::kVersion, path,
                         "a LibTorch archive of format version " + std::to_string(version.toInt()) +
                             "; only version 1 was one");
  }
  if (!out.archive.try_read("config", config) || !config.isString()) {
    throw ModelFileError(Kind::kCorrupt, path, "field 'config' missing or not a string");
  }
  try {
    out.config = ModelConfig::from_json(config.toStringRef(), "config");
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(Kind::kCorrupt, path, e.what());
  }
}

}  // namespace

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor files hold little-endian bytes; a big-endian host needs byte swaps here");

namespace {

TensorDtype file_dtype(torch::ScalarType t, const std::string& name) {
  switch (t) {
    case torch::kFloat:
      return TensorDtype::kF32;
    case torch::kLong:
      return TensorDtype::kI64;
    case torch::kBFloat16:
      return TensorDtype::kBF16;
    default:
      throw std::invalid_argument("tensor '" + name + "' has type " +
                                  std::string(c10::toString(t)) +
                                  ", which tensor files do not hold");
  }
}

std::string shape_text(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

void write_tensor_file(const std::string& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<TensorEntry> entries;
  std::vector<torch::Tensor> data;
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    if (!names.insert(name).second) {
      throw std::invalid_argument("write_tensor_file: tensor name '" + name + "' repeats");
    }
    TensorEntry e;
    e.name = name;
    e.dtype = file_dtype(t.scalar_type(), name);
    e.shape = t.sizes().vec();
    entries.push_back(e);
    data.push_back(t.detach().to(torch::kCPU).contiguous());
  }
  const std::string prefix = tensor_file_prefix(metadata, entries);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
    out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
    for (const auto& t : data) {
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    }
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw std::runtime_error("cannot write '" + tmp + "' (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
  }
}

TensorFileReader::TensorFileReader(const std::string& path) : path_(path) {
  check_openable(path);
  in_.open(path, std::ios::binary);
  in_.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(std::max<std::streamoff>(0, in_.tellg()));
  in_.seekg(0);
  char first8[8] = {};
  if (size < 8 || !in_.read(first8, 8)) {
    throw ModelFileError(Kind::kCorrupt, path, "shorter than a tensor file's 8-byte header");
  }
  if (std::memcmp(first8, "PK\x03\x04", 4) == 0) {
    throw ModelFileError(Kind::kVersion, path,
                         "a LibTorch archive (the version-1 model format, whose loading can run "
                         "code): if it is your own file, convert it once with `autoassign "
                         "convert OLD NEW`");
  }
  try {
    const uint64_t n = tensor_header_length(first8, size);
    std::string json(n, '\0');
    if (!in_.read(json.data(), static_cast<std::streamsize>(n))) {
      throw std::invalid_argument("cannot read the header");
    }
    header_ = parse_tensor_header(json, size);
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(Kind::kCorrupt, path, std::string("not a valid tensor file: ") + e.what());
  }
}

torch::Tensor TensorFileReader::read(const std::string& name, torch::ScalarType dtype,
                                     at::IntArrayRef shape) {
  const TensorEntry* e = header_.find(name);
  if (!e) throw ModelFileError(Kind::kCorrupt, path_, "tensor '" + name + "' is missing");
  if (e->dtype != file_dtype(dtype, name) || e->shape != shape.vec()) {
    throw ModelFileError(Kind::kCorrupt, path_,
                         "tensor '" + name + "' is " + dtype_name(e->dtype) + " " +
                             shape_text(e->shape) + ", the config needs " +
                             dtype_name(file_dtype(dtype, name)) + " " + shape_text(shape));
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  in_.seekg(static_cast<std::streamoff>(header_.data_offset + e->begin));
  if (!in_.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()))) {
    throw ModelFileError(Kind::kUnreadable, path_, "cannot read tensor '" + name + "'");
  }
  return t;
}

std::vector<std::pair<std::string, torch::Tensor>> module_tensors(torch::nn::Module& module,
                                                                  const std::string& prefix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters()) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers()) out.emplace_back(prefix + b.key(), b.value());
  return out;
}

std::vector<std::string> read_module_tensors(TensorFileReader& reader, torch::nn::Module& module,
                                             const std::string& prefix) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> names;
  for (auto& [name, t] : module_tensors(module, prefix)) {
    auto value = reader.read(name, t.scalar_type(), t.sizes());
    t.copy_(value);
    names.push_back(name);
  }
  return names;
}

void save_model(const std::string& path, AutoAssign& model) {
  for (const auto& m : model->modules()) {
    if (auto* unit = m->as<ConvNormActImpl>()) {
      TORCH_CHECK(!unit->fused(),
                  "save_model: the model was prepared for inference (BN folded); "
                  "save the training model instead");
    }
  }
  write_tensor_file(path,
                    {{"format", kModelFormatTag},
                     {"format_version", std::to_string(kModelFormatVersion)},
                     {"config", model->config().to_json()}},
                    module_tensors(*model));
}

namespace {

// The header's metadata checked in order (format, version, config) so the message names the
// first thing that is wrong.
ModelConfig model_config_of(const TensorFileReader& reader) {
  const auto& meta = reader.header().metadata;
  const auto& path = reader.path();
  auto field = [&](const char* key) -> const std::string* {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  const std::string* tag = field("format");
  if (!tag || *tag != kModelFormatTag) {
    throw ModelFileError(Kind::kCorrupt, path,
                         "a tensor file but not an autoassign model (metadata 'format' missing "
                         "or not '" +
                             std::string(kModelFormatTag) + "')");
  }
  const std::string* version = field("format_version");
  if (!version) throw ModelFileError(Kind::kCorrupt, path, "metadata 'format_version' missing");
  if (*version != std::to_string(kModelFormatVersion)) {
    throw ModelFileError(Kind::kVersion, path,
                         "format version '" + *version + "', but this build reads version " +
                             std::to_string(kModelFormatVersion));
  }
  const std::string* config = field("config");
  if (!config) throw ModelFileError(Kind::kCorrupt, path, "metadata 'config' missing");
  try {
    return ModelConfig::from_json(*config, "config");
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(Kind::kCorrupt, path, e.what());
  }
}

}  // namespace

ModelConfig read_model_config(const std::string& path) {
  TensorFileReader reader(path);
  return model_config_of(reader);
}

AutoAssign load_model(const std::string& path, const torch::Device& device) {
  TensorFileReader reader(path);
  AutoAssign model(model_config_of(reader));
  // Every tensor of the file must be one the config implies: none left over.
  std::set<std::string> wanted;
  for (const auto& [name, t] : module_tensors(*model)) wanted.insert(name);
  for (const auto& e : reader.header().tensors) {
    if (!wanted.count(e.name)) {
      throw ModelFileError(Kind::kCorrupt, path,
                           "tensor '" + e.name + "' is not part of the model its config describes");
    }
  }
  read_module_tensors(reader, *model);
  model->to(device);
  return model;
}

AutoAssign load_legacy_model(const std::string& path) {
  OpenedArchive opened;
  open_archive(path, opened);
  AutoAssign model(opened.config);
  torch::serialize::InputArchive weights;
  if (!opened.archive.try_read("model", weights)) {
    throw ModelFileError(Kind::kCorrupt, path, "no 'model' weights");
  }
  // Module::load replaces tensors wholesale, so shapes are checked against the config here.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& p : model->named_parameters())
    expected.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : model->named_buffers())
    expected.emplace_back(b.key(), b.value().sizes().vec());
  try {
    model->load(weights);
  } catch (const c10::Error& e) {
    throw ModelFileError(Kind::kCorrupt, path,
                         "weights do not match the config: " + short_message(e));
  }
  auto params = model->named_parameters();
  auto buffers = model->named_buffers();
  for (const auto& [name, shape] : expected) {
    const torch::Tensor* t = params.find(name);
    if (!t) t = buffers.find(name);
    if (!t || t->sizes().vec() != shape) {
      throw ModelFileError(Kind::kCorrupt, path,
                           "tensor '" + name + "' does not have the shape the config needs");
    }
  }
  return model;
}

}  // namespace autoassign

namespace autoassign {

torch::Tensor torch_tensor(const TorchCheckpoint& checkpoint, const TorchTensorRef& ref) {
  static const std::map<TorchDtype, torch::ScalarType> types = {
      {TorchDtype::kF32, torch::kFloat}, {TorchDtype::kF64, torch::kDouble},
      {TorchDtype::kF16, torch::kHalf},  {TorchDtype::kBF16, torch::kBFloat16},
      {TorchDtype::kI64, torch::kLong},  {TorchDtype::kI32, torch::kInt},
      {TorchDtype::kI16, torch::kShort}, {TorchDtype::kI8, torch::kChar},
      {TorchDtype::kU8, torch::kByte},   {TorchDtype::kBool, torch::kBool}};
  const std::string_view bytes = checkpoint.tensor_bytes(ref);
  if (ref.numel() == 0) return torch::empty(ref.shape, torch::TensorOptions(types.at(ref.dtype)));
  // The storage is little-endian, as this host: a strided view over the record, then a copy.
  auto view = torch::from_blob(const_cast<char*>(bytes.data()), ref.shape, ref.stride,
                               torch::TensorOptions(types.at(ref.dtype)));
  return view.clone(torch::MemoryFormat::Contiguous);
}

}  // namespace autoassign
