// SPDX-License-Identifier: MIT
// The face teacher against ../shared/tools/face_peers.py (teacher_reference.py runs its YuNet
// and SCRFD classes, and the networks' raw score maps, in Python on the same real WIDER image):
// the same boxes and scores to 1e-4, the same dense maps; and the files it refuses.
#include "autoassign/train/teacher/face_teacher.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fixtures.h"

namespace autoassign {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string peers_dir() { return env("AUTOASSIGN_PEERS"); }

// Runs teacher_reference.py; returns its output file's lines.
std::vector<std::string> reference(const std::string& onnx, const std::string& image,
                                   const std::string& mode) {
  const std::string out = testing::temp_dir() + "/ref-" + mode + ".txt";
  const std::string cmd = "/usr/bin/python3 '" + env("AUTOASSIGN_TEACHER_REFERENCE") + "' '" +
                          env("AUTOASSIGN_TOOLS") + "' '" + onnx + "' '" + image + "' " + mode +
                          " '" + out + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<double> numbers(const std::string& line) {
  std::istringstream s(line);
  std::vector<double> v;
  for (double x; s >> x;) v.push_back(x);
  return v;
}

bool near(double a, double b) { return std::abs(a - b) <= 1e-4 * std::max(1.0, std::abs(b)); }

class FaceTeacherTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const auto data = testing::shared_data_dir();
    if (data.empty()) return;
    ASSERT_FALSE(peers_dir().empty()) << "AUTOASSIGN_PEERS is not set (meson test sets it)";
    onnx = peers_dir() + "/" + GetParam();
    // A dev-val crowd scene (1024x682 after decoding): many faces, small and large.
    image_path = data + "/widerface/WIDER_val/images/0--Parade/0_Parade_Parade_0_102.jpg";
    image = cv::imread(image_path, cv::IMREAD_COLOR);
    ASSERT_FALSE(image.empty()) << image_path;
  }
  std::string onnx, image_path;
  cv::Mat image;
};

TEST_P(FaceTeacherTest, DetectGivesFacePeersBoxesAndScores) {
  FaceTeacher teacher(onnx);
  EXPECT_EQ(teacher.kind(), std::string(GetParam()).rfind("yunet", 0) == 0 ? TeacherKind::kYuNet
                                                                           : TeacherKind::kScrfd);
  const auto got = teacher.detect(image);
  const auto want = reference(onnx, image_path, "detect");
  ASSERT_GT(want.size(), 20u) << "the reference found too few faces to compare";
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto w = numbers(want[i]);
    ASSERT_EQ(w.size(), 5u);
    const auto& g = got[i];
    EXPECT_TRUE(near(g.x1, w[0]) && near(g.y1, w[1]) && near(g.x2 - g.x1, w[2]) &&
                near(g.y2 - g.y1, w[3]) && near(g.score, w[4]))
        << "face " << i << ": " << g.x1 << " " << g.y1 << " " << g.x2 - g.x1 << " " << g.y2 - g.y1
        << " " << g.score << " against " << want[i];
  }
}

TEST_P(FaceTeacherTest, DenseMapsAreTheNetworksScoresAtTheStudentsLocations) {
  // A 640x472 crop (not a multiple of 16 or 32 high: the maps' last row covers part of the
  // image) as a training image: at the canvas's top-left, unscaled.
  const cv::Mat crop = image(cv::Rect(100, 100, 640, 472)).clone();
  const std::string crop_path = testing::temp_dir() + "/crop.png";
  ASSERT_TRUE(cv::imwrite(crop_path, crop));
  cv::Mat crop_float;
  crop.convertTo(crop_float, CV_32FC3);
  FaceTeacher teacher(onnx);
  const auto view = teacher.dense(crop_float, {8, 16, 32, 64});
  ASSERT_EQ(view.scores.size(), 4u);
  EXPECT_FALSE(view.scores[3].defined()) << "the teacher has no stride-64 output";
  const auto want = reference(onnx, crop_path, "maps");
  size_t line = 0;
  double peak = 0;
  for (int l = 0; l < 3; ++l) {
    ASSERT_LT(line, want.size());
    const auto head = numbers(want[line++]);
    ASSERT_EQ(head.size(), 3u);
    const auto& map = view.scores[static_cast<size_t>(l)];
    ASSERT_TRUE(map.defined());
    ASSERT_EQ(map.size(0), head[1]) << "stride " << head[0];
    ASSERT_EQ(map.size(1), head[2]) << "stride " << head[0];
    const auto a = map.accessor<float, 2>();
    for (int r = 0; r < map.size(0); ++r) {
      const auto row = numbers(want[line++]);
      ASSERT_EQ(row.size(), static_cast<size_t>(map.size(1)));
      for (int c = 0; c < map.size(1); ++c) {
        ASSERT_NEAR(a[r][c], row[static_cast<size_t>(c)], 1e-5)
            << "stride " << head[0] << " at " << r << "," << c;
        peak = std::max(peak, row[static_cast<size_t>(c)]);
      }
    }
  }
  EXPECT_GT(peak, 0.5) << "a crowd scene with no confident face: the comparison proves little";
}

TEST_P(FaceTeacherTest, DenseBoxesOfAnUnscaledImageAreDetectsBoxes) {
  // At 640x640 the letterbox of detect() is the identity for both teachers (SCRFD's centres
  // a 640x480 image), so both passes see the same canvas.
  const cv::Mat square = image(cv::Rect(0, 0, 640, 640)).clone();
  cv::Mat square_float;
  square.convertTo(square_float, CV_32FC3);
  FaceTeacher teacher(onnx);
  const double nms = teacher.kind() == TeacherKind::kYuNet ? 0.45 : 0.4;
  const auto want = teacher.detect(square, 0.3, nms);
  const auto got = teacher.dense(square_float, {8}, 0.3, nms).boxes;
  ASSERT_GT(want.size(), 5u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i].score, want[i].score, 1e-5);
    EXPECT_NEAR(got[i].x1, want[i].x1, 1e-3);
    EXPECT_NEAR(got[i].y2, want[i].y2, 1e-3);
  }
}

TEST_P(FaceTeacherTest, ALargerImageIsShrunkOntoTheCanvasAndItsMapsBroughtBack) {
  // 1280x960: shrunk by 2 onto the canvas; the maps come back at the image's own locations
  // and the boxes in its pixels (the faces the unscaled 640x480 pass finds, twice as large).
  cv::Mat vga, big, vga_f, big_f;
  cv::resize(image(cv::Rect(0, 0, 960, 640)), vga, cv::Size(640, 480));
  cv::resize(vga, big, cv::Size(1280, 960), 0, 0, cv::INTER_NEAREST);
  vga.convertTo(vga_f, CV_32FC3);
  big.convertTo(big_f, CV_32FC3);
  FaceTeacher teacher(onnx);
  const auto small_view = teacher.dense(vga_f, {8, 16}, 0.5);
  const auto big_view = teacher.dense(big_f, {8, 16}, 0.5);
  ASSERT_EQ(big_view.scores[0].sizes(), (std::vector<int64_t>{120, 160}));
  ASSERT_EQ(big_view.scores[1].sizes(), (std::vector<int64_t>{60, 80}));
  // The shrunk canvas is the 640x480 one up to resampling: the maps agree where upsampled.
  const auto up = torch::nn::functional::interpolate(small_view.scores[1].view({1, 1, 30, 40}),
                                                     torch::nn::functional::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{60, 80})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false))
                      .view({60, 80});
  EXPECT_LT((up - big_view.scores[1]).abs().max().item<double>(), 0.1);
  ASSERT_GT(small_view.boxes.size(), 3u);
  ASSERT_EQ(big_view.boxes.size(), small_view.boxes.size());
  for (size_t i = 0; i < big_view.boxes.size(); ++i) {
    EXPECT_NEAR(big_view.boxes[i].x1, 2 * small_view.boxes[i].x1, 2.0);
    EXPECT_NEAR(big_view.boxes[i].y2, 2 * small_view.boxes[i].y2, 2.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Peers, FaceTeacherTest,
                         // SCRFD-2.5GF too: item 14 of face-rt.md trains with it; same
                         // output layout as 0.5GF, so the one decoder serves both.
                         ::testing::Values("yunet_n_640_640.onnx", "scrfd_500m_kps.onnx",
                                           "scrfd_2.5g_kps.onnx"),
                         [](const auto& peer) {
                           const std::string p = peer.param;
                           if (p.rfind("yunet", 0) == 0) return std::string("YuNet");
                           return std::string(p.find("2.5g") != std::string::npos ? "SCRFD2_5g"
                                                                                  : "SCRFD");
                         });

TEST(FaceTeacher, RefusesWhatIsNotAFaceTeacher) {
  const auto dir = testing::temp_dir();
  const auto expect_error = [](const std::string& path, const std::string& words) {
    try {
      FaceTeacher t(path);
      ADD_FAILURE() << path << " was accepted";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(words), std::string::npos) << what;
    }
  };
  expect_error(dir + "/missing.onnx", "no such file");
  expect_error(dir, "directory");
  std::ofstream(dir + "/text.onnx") << "not a network";
  expect_error(dir + "/text.onnx", "cannot load it as ONNX");
  ASSERT_FALSE(peers_dir().empty());
  // A face detector, but not one with YuNet's or SCRFD's outputs.
  expect_error(peers_dir() + "/version-RFB-640.onnx", "not a 640x640 YuNet or SCRFD");
}

}  // namespace
}  // namespace autoassign
