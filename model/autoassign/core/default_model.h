// SPDX-License-Identifier: MIT
// The model used when none is named (the element's model-file, `autoassign detect/eval/bench/
// info`, autoassign-cameras): the shipped face model, from wherever this copy of the code runs.
#pragma once

#include <string>

namespace autoassign {

struct DefaultModel {
  std::string path;
  /// Where the choice came from, for --help, gst-inspect and errors: "AUTOASSIGN_MODEL_FILE",
  /// "installed" or "source tree".
  std::string origin;
};

/// In order: the environment variable AUTOASSIGN_MODEL_FILE when set; the source tree's
/// model/zoo/face-rt.pt when this code runs from the build folder it was compiled in (unless
/// AUTOASSIGN_AS_INSTALLED is set: manual pages made at build time); the
/// installed DATADIR/autoassign-gst/face-rt.pt (whether or not it exists: loading it names the
/// path when it does not).
DefaultModel default_model();

/// "PATH (origin)", as help texts print it.
std::string default_model_description();

}  // namespace autoassign
