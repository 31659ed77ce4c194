// SPDX-License-Identifier: MIT
// Small generated fixtures shared by the test suites: tiny model configs, synthetic pictures,
// and a tiny model trained in-process to find a bright square (so detections are stable
// enough to compare across pixel formats and pipelines).
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "autoassign/core/config.h"

namespace autoassign::testing {

/// A "fast" backbone with a few channels, GN everywhere, levels P3..P(max_level).
ModelConfig tiny_config(int num_classes = 2, int max_level = 5, int input_w = 128,
                        int input_h = 128);

/// A BGR picture: smooth noisy background with a bright square at `box` (x1, y1, x2, y2).
cv::Mat square_picture(int width, int height, const cv::Rect& box, unsigned seed = 1);

/// Path of a model file (one class, "square") trained for a few hundred steps on random
/// square_picture()s. Trained once per process, then cached in a temporary directory.
const std::string& trained_square_model();

/// A fresh temporary directory removed at exit.
std::string temp_dir();

/// Runs the Python script named by environment variable `env_var` (meson test sets it) with
/// Debian's /usr/bin/python3 (the one python3-torch is installed for) and `out_dir` as its
/// argument. Returns "" on success, else what went wrong.
std::string run_torch_script(const char* env_var, const std::string& out_dir);

/// The real annotated images (../shared/data, AUTOASSIGN_DATA, which meson test sets), or ""
/// after a test failure saying what is missing: a test that needs them fails without them
/// instead of skipping, so a CI machine without ../shared cannot pass quietly. Use as
/// `const auto data = testing::shared_data_dir(); if (data.empty()) return;` (in SetUp, a
/// failure there skips the test body).
std::string shared_data_dir();

/// A whole file's bytes ("" if it cannot be read).
std::string read_file_bytes(const std::string& path);

}  // namespace autoassign::testing
