// SPDX-License-Identifier: MIT
#include "autoassign/checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "autoassign/types.h"

namespace autoassign {
namespace {

using Kind = ModelFileError::Kind;

// First line of a c10::Error, without LibTorch's C++ backtrace.
std::string short_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  const auto nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

void check_openable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw ModelFileError(Kind::kNotFound, path, "no such file");
    throw ModelFileError(Kind::kUnreadable, path, std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw ModelFileError(Kind::kUnreadable, path, "is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(Kind::kUnreadable, path, "cannot be opened for reading");
}

struct OpenedArchive {
  torch::serialize::InputArchive archive;
  ModelConfig config;
};

// Opens the archive and checks tag, version and config, in that order, so that the message
// says the first thing that is wrong.
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
  if (version.toInt() != kModelFormatVersion) {
    throw ModelFileError(Kind::kVersion, path,
                         "format version " + std::to_string(version.toInt()) +
                             ", but this build reads version " +
                             std::to_string(kModelFormatVersion));
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

void save_model(const std::string& path, AutoAssign& model) {
  for (const auto& m : model->modules()) {
    if (auto* unit = m->as<ConvNormActImpl>()) {
      TORCH_CHECK(!unit->fused(),
                  "save_model: the model was prepared for inference (BN folded); "
                  "save the training model instead");
    }
  }
  torch::serialize::OutputArchive archive, weights;
  archive.write("format", c10::IValue(std::string(kModelFormatTag)));
  archive.write("format_version", c10::IValue(kModelFormatVersion));
  archive.write("config", c10::IValue(model->config().to_json()));
  model->save(weights);
  archive.write("model", weights);
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write model file '" + path + "': " + std::strerror(errno));
  }
}

ModelConfig read_model_config(const std::string& path) {
  OpenedArchive opened;
  open_archive(path, opened);
  return opened.config;
}

AutoAssign load_model(const std::string& path, const torch::Device& device) {
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
  model->to(device);
  return model;
}

}  // namespace autoassign
