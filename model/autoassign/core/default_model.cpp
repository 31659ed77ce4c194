// SPDX-License-Identifier: MIT
#include "autoassign/core/default_model.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>

// meson sets these (model/autoassign/core/meson.build).
#ifndef AUTOASSIGN_INSTALLED_MODEL
#define AUTOASSIGN_INSTALLED_MODEL "/usr/share/autoassign-gst/face-rt.pt"
#endif
#ifndef AUTOASSIGN_SOURCE_MODEL
#define AUTOASSIGN_SOURCE_MODEL ""
#endif
#ifndef AUTOASSIGN_BUILD_ROOT
#define AUTOASSIGN_BUILD_ROOT ""
#endif

namespace autoassign {

namespace {

// The file this function was loaded from: the program, or the plugin's shared module (whose
// host program, gst-launch-1.0, lives elsewhere).
std::string this_binary() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&this_binary), &info) == 0 || !info.dli_fname) return "";
  std::error_code ec;
  const auto p = std::filesystem::weakly_canonical(info.dli_fname, ec);
  return ec ? std::string(info.dli_fname) : p.string();
}

bool under(const std::string& path, const std::string& root) {
  if (root.empty() || path.size() <= root.size()) return false;
  return path.compare(0, root.size(), root) == 0 && path[root.size()] == '/';
}

}  // namespace

DefaultModel default_model() {
  if (const char* env = std::getenv("AUTOASSIGN_MODEL_FILE"); env && *env) {
    return {env, "AUTOASSIGN_MODEL_FILE"};
  }
  const std::string source = AUTOASSIGN_SOURCE_MODEL;
  // AUTOASSIGN_AS_INSTALLED: a build-folder binary answering as its installed copy will (the
  // manual pages are made from --help at build time).
  const bool as_installed = std::getenv("AUTOASSIGN_AS_INSTALLED") != nullptr;
  if (!as_installed && !source.empty() && under(this_binary(), AUTOASSIGN_BUILD_ROOT) &&
      std::filesystem::exists(source)) {
    return {source, "source tree"};
  }
  return {AUTOASSIGN_INSTALLED_MODEL, "installed"};
}

std::string default_model_description() {
  const auto m = default_model();
  return m.path + " (" + m.origin + ")";
}

}  // namespace autoassign
