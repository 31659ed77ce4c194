// SPDX-License-Identifier: MIT
#include "fixtures.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/modeling/model.h"
#include "autoassign/infer/preprocess.h"
#include "autoassign/train/assign/loss.h"

namespace autoassign::testing {

ModelConfig tiny_config(int num_classes, int max_level, int input_w, int input_h) {
  ModelConfig c;
  c.name = "tiny";
  c.num_classes = num_classes;
  c.class_names.clear();
  for (int k = 0; k < num_classes; ++k) c.class_names.push_back("class" + std::to_string(k));
  c.backbone.type = "fast";
  c.backbone.norm = "gn";
  c.backbone.freeze_at = 0;
  c.backbone.channels = {8, 16, 16, 32, 32};
  c.backbone.blocks = {0, 1, 1, 0};
  c.fpn.channels = 16;
  c.fpn.levels.clear();
  for (int l = 3; l <= max_level; ++l) c.fpn.levels.push_back(l);
  c.head.channels = 16;
  c.head.num_convs = 1;
  c.head.norm = "gn";
  c.head.gn_groups = 4;
  c.input.resize = "fit";
  c.input.width = input_w;
  c.input.height = input_h;
  c.input.size_divisor = 32;
  c.input.mean = {128, 128, 128};
  c.input.std = {64, 64, 64};
  c.validate();
  return c;
}

cv::Mat square_picture(int width, int height, const cv::Rect& box, unsigned seed) {
  cv::Mat img(height, width, CV_8UC3);
  cv::RNG rng(seed);
  cv::Mat noise(height / 4 + 1, width / 4 + 1, CV_8UC3);
  rng.fill(noise, cv::RNG::UNIFORM, 40, 110);
  cv::resize(noise, img, img.size(), 0, 0, cv::INTER_LINEAR);  // smooth, colourful background
  cv::rectangle(img, box, cv::Scalar(235, 245, 250), cv::FILLED);
  return img;
}

namespace {

// Removes the directories temp_dir() made when the test process exits normally.
struct TempDirs {
  std::vector<std::string> paths;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& p : paths) std::filesystem::remove_all(p, ec);
  }
};

}  // namespace

std::string temp_dir() {
  static TempDirs dirs;
  std::string templ = (std::filesystem::temp_directory_path() / "autoassign-test-XXXXXX").string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  dirs.paths.push_back(buf.data());
  return buf.data();
}

std::string run_torch_script(const char* env_var, const std::string& out_dir) {
  const char* script = std::getenv(env_var);
  if (!script) return std::string(env_var) + " is not set (meson test sets it)";
  const std::string cmd = std::string("/usr/bin/python3 ") + script + " " + out_dir;
  if (std::system(cmd.c_str()) != 0) return cmd + " failed (is python3-torch installed?)";
  return "";
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

namespace {

std::string train_square_model() {
  torch::manual_seed(7);
  std::mt19937 rng(7);
  ModelConfig config = tiny_config(/*num_classes=*/1, /*max_level=*/5, 96, 96);
  config.name = "tiny-square";
  config.class_names = {"square"};
  AutoAssign model(config);
  model->train();
  Preprocessor pre(config.input);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
  std::uniform_int_distribution<int> size(24, 56), pos(0, 1000);
  const int batch = 4;
  for (int step = 0; step < 300; ++step) {
    std::vector<torch::Tensor> images;
    std::vector<Target> targets;
    for (int b = 0; b < batch; ++b) {
      const int s = size(rng);
      const int x = pos(rng) % (96 - s), y = pos(rng) % (96 - s);
      cv::Mat img = square_picture(96, 96, cv::Rect(x, y, s, s), static_cast<unsigned>(rng()));
      images.push_back(
          pre(ImageView::packed(PixelFormat::kBGR, img.data, 96, 96, static_cast<int>(img.step)),
              nullptr));
      targets.push_back({torch::tensor({{float(x), float(y), float(x + s), float(y + s)}}),
                         torch::zeros({1}, torch::kLong),
                         {}});
    }
    auto out = model->forward(torch::stack(images));
    auto losses = autoassign_loss(out, model->strides(), targets, *model->center_prior);
    auto total = losses["loss_pos"] + losses["loss_neg"] + losses["loss_center"];
    opt.zero_grad();
    total.backward();
    opt.step();
  }
  const std::string path = temp_dir() + "/square.pt";
  save_model(path, model);
  return path;
}

}  // namespace

const std::string& trained_square_model() {
  static const std::string path = train_square_model();
  return path;
}

std::string shared_data_dir() {
  const char* d = std::getenv("AUTOASSIGN_DATA");
  if (!d || !*d) {
    ADD_FAILURE() << "AUTOASSIGN_DATA is not set: run the suite with meson test (it points it at "
                     "../shared/data)";
    return "";
  }
  if (!std::filesystem::is_directory(std::string(d) + "/widerface")) {
    ADD_FAILURE() << "AUTOASSIGN_DATA=" << d << " holds no widerface/: ../shared/data is missing";
    return "";
  }
  return d;
}

}  // namespace autoassign::testing
