// SPDX-License-Identifier: MIT
// The Detector facade on a tiny model trained in-process to find a bright square: it finds
// it, every pixel format of the same picture gives the same detections as RGB, a batch equals
// one-by-one, and bad options or frames give named errors.
#include "autoassign/infer/detector.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "autoassign/infer/preprocess.h"
#include "fixtures.h"

namespace autoassign {
namespace {

double iou(const Detection& a, const cv::Rect2f& b) {
  const double iw = std::max(0.f, std::min(a.x2, b.x + b.width) - std::max(a.x1, b.x));
  const double ih = std::max(0.f, std::min(a.y2, b.y + b.height) - std::max(a.y1, b.y));
  const double inter = iw * ih;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + b.area() - inter);
}

double iou(const Detection& a, const Detection& b) {
  return iou(a, cv::Rect2f(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1));
}

// The same picture in every format, with padded strides so stride handling is exercised.
struct Frames {
  explicit Frames(const cv::Mat& bgr) : w(bgr.cols), h(bgr.rows) {
    auto padded = [](const cv::Mat& m) {
      cv::Mat big(m.rows, m.cols + 7, m.type(), cv::Scalar::all(0));
      m.copyTo(big.colRange(0, m.cols));
      return big;
    };
    cv::Mat tmp;
    cv::cvtColor(bgr, tmp, cv::COLOR_BGR2RGB);
    rgb = padded(tmp);
    bgr_ = padded(bgr);
    cv::cvtColor(bgr, tmp, cv::COLOR_BGR2RGBA);
    rgba = padded(tmp);
    cv::cvtColor(bgr, tmp, cv::COLOR_BGR2BGRA);
    bgra = padded(tmp);
    cv::cvtColor(bgr, tmp, cv::COLOR_BGR2GRAY);
    gray = padded(tmp);
    cv::cvtColor(bgr, i420, cv::COLOR_BGR2YUV_I420);  // Y, then U, then V, contiguous
    // NV12 from the I420 planes: the same Y, U and V interleaved.
    nv12_uv.create(h / 2, w, CV_8UC1);
    const uint8_t* u = i420.ptr(h);
    const uint8_t* v = u + (w / 2) * (h / 2);
    for (int r = 0; r < h / 2; ++r) {
      for (int c = 0; c < w / 2; ++c) {
        nv12_uv.at<uint8_t>(r, 2 * c) = u[r * (w / 2) + c];
        nv12_uv.at<uint8_t>(r, 2 * c + 1) = v[r * (w / 2) + c];
      }
    }
  }

  std::vector<std::pair<std::string, ImageView>> views() const {
    auto packed = [&](PixelFormat f, const cv::Mat& m) {
      return ImageView::packed(f, m.data, w, h, static_cast<int>(m.step));
    };
    const uint8_t* y = i420.data;
    const uint8_t* u = i420.ptr(h);
    const uint8_t* v = u + (w / 2) * (h / 2);
    return {{"RGB", packed(PixelFormat::kRGB, rgb)},
            {"BGR", packed(PixelFormat::kBGR, bgr_)},
            {"RGBx", packed(PixelFormat::kRGBx, rgba)},
            {"RGBA", packed(PixelFormat::kRGBA, rgba)},
            {"BGRx", packed(PixelFormat::kBGRx, bgra)},
            {"BGRA", packed(PixelFormat::kBGRA, bgra)},
            {"GRAY8", packed(PixelFormat::kGRAY8, gray)},
            {"NV12", ImageView::nv12(y, w, nv12_uv.data, static_cast<int>(nv12_uv.step), w, h)},
            {"I420", ImageView::i420(y, w, u, w / 2, v, w / 2, w, h)}};
  }

  int w, h;
  cv::Mat rgb, bgr_, rgba, bgra, gray, i420, nv12_uv;
};

class DetectorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { testing::trained_square_model(); }
  const cv::Rect2f square{50, 30, 50, 50};
  cv::Mat picture() const { return testing::square_picture(160, 120, square, 99); }
};

TEST_F(DetectorTest, FindsTheSquare) {
  Detector det(testing::trained_square_model(), DetectorOptions{"cpu", 2});
  cv::Mat img = picture();
  auto found = det.detect(ImageView::packed(PixelFormat::kBGR, img.data, img.cols, img.rows));
  ASSERT_FALSE(found.empty());
  EXPECT_GT(found[0].score, 0.3);
  EXPECT_GT(iou(found[0], square), 0.6);
  EXPECT_EQ(found[0].label, "square");
  EXPECT_EQ(found[0].label_id, 0);
  for (const auto& d : found) {
    EXPECT_GE(d.x1, 0);
    EXPECT_GE(d.y1, 0);
    EXPECT_LE(d.x2, img.cols);
    EXPECT_LE(d.y2, img.rows);
  }
}

TEST_F(DetectorTest, EveryPixelFormatMatchesRgb) {
  Detector det(testing::trained_square_model());
  det.set_threshold(0.2f);
  Frames frames(picture());
  auto views = frames.views();
  const auto reference = det.detect(views[0].second);
  ASSERT_FALSE(reference.empty());
  for (const auto& [name, view] : views) {
    SCOPED_TRACE(name);
    const auto found = det.detect(view);
    // Grey drops colour and YUV rounds it: allow a looser score there.
    const bool lossy = name == "GRAY8" || name == "NV12" || name == "I420";
    const double score_tol = lossy ? 0.1 : 1e-4;
    for (const auto& r : reference) {
      if (r.score < 0.3) continue;
      auto best = std::max_element(found.begin(), found.end(), [&](const auto& a, const auto& b) {
        return iou(a, r) < iou(b, r);
      });
      ASSERT_NE(best, found.end());
      EXPECT_GT(iou(*best, r), lossy ? 0.85 : 0.999);
      EXPECT_NEAR(best->score, r.score, score_tol);
    }
  }
}

TEST_F(DetectorTest, DevicePathMatchesOpenCvPath) {
  // The tensor-only conversion used for CUDA frames, run on CPU tensors.
  Preprocessor pre(testing::tiny_config().input);
  Frames frames(picture());
  for (const auto& [name, view] : frames.views()) {
    SCOPED_TRACE(name);
    auto cv_path = pre.resize_to_u8(view, 80, 60).permute({2, 0, 1}).to(torch::kFloat);
    auto torch_path = pre.resize_on_device(view, 80, 60, torch::kCPU);
    ASSERT_EQ(cv_path.sizes(), torch_path.sizes());
    EXPECT_LT((cv_path - torch_path).abs().mean().item<double>(), 3.0);
  }
}

// In fp32: bf16 (precision auto on AMX CPUs) rounds differently with the batch's layout.
TEST_F(DetectorTest, BatchEqualsOneByOne) {
  DetectorOptions fp32;
  fp32.precision = "fp32";
  Detector det(testing::trained_square_model(), fp32);
  det.set_threshold(0.1f);
  cv::Mat a = picture();
  cv::Mat b = testing::square_picture(200, 150, cv::Rect(20, 60, 40, 40), 5);
  auto va = ImageView::packed(PixelFormat::kBGR, a.data, a.cols, a.rows);
  auto vb = ImageView::packed(PixelFormat::kBGR, b.data, b.cols, b.rows);
  auto batched = det.detect(std::vector<ImageView>{va, vb});
  ASSERT_EQ(batched.size(), 2u);
  const std::vector<std::vector<Detection>> single = {det.detect(va), det.detect(vb)};
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(batched[i].size(), single[i].size()) << i;
    for (size_t k = 0; k < single[i].size(); ++k) {
      EXPECT_NEAR(batched[i][k].score, single[i][k].score, 1e-4);
      EXPECT_NEAR(batched[i][k].x1, single[i][k].x1, 1e-2);
      EXPECT_NEAR(batched[i][k].y2, single[i][k].y2, 1e-2);
    }
  }
}

TEST_F(DetectorTest, OptionsAndThresholds) {
  Detector det(testing::trained_square_model());
  cv::Mat img = picture();
  auto view = ImageView::packed(PixelFormat::kBGR, img.data, img.cols, img.rows);
  det.set_threshold(0.0f);
  det.set_max_detections(3);
  EXPECT_EQ(det.detect(view).size(), 3u);
  det.set_threshold(0.99f);
  for (const auto& d : det.detect(view)) EXPECT_GT(d.score, 0.99f);
  EXPECT_THROW(det.set_threshold(1.5f), std::invalid_argument);
  EXPECT_THROW(det.set_iou_threshold(0.0f), std::invalid_argument);
  EXPECT_THROW(det.set_max_detections(0), std::invalid_argument);
  EXPECT_THROW(det.set_class_names({"a", "b"}), std::invalid_argument);
  det.set_class_names({"box"});
  det.set_threshold(0.3f);
  auto found = det.detect(view);
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found[0].label, "box");
}

TEST_F(DetectorTest, PerCallParamsLeaveTheDetectorAlone) {
  Detector det(testing::trained_square_model());
  cv::Mat img = picture();
  auto view = ImageView::packed(PixelFormat::kBGR, img.data, img.cols, img.rows);
  const float own = det.threshold();
  DetectParams p;
  p.threshold = 0.0f;
  p.max_detections = 3;
  EXPECT_EQ(det.detect(view, p).size(), 3u);
  EXPECT_FLOAT_EQ(det.threshold(), own);  // the shared detector's settings are untouched
  for (const auto& d : det.detect(view)) EXPECT_GT(d.score, own);
  p.threshold = 1.5f;
  EXPECT_THROW(det.detect(view, p), std::invalid_argument);
}

TEST_F(DetectorTest, InputSizeOverride) {
  // Twice the model's input size on a picture twice as large: the square has the same size in
  // network pixels, so it is found, and the box comes back in the large frame's pixels.
  const auto input =
      nlohmann::json::parse(Detector(testing::trained_square_model()).info().config_json)["input"];
  DetectorOptions o;
  o.input_width = 2 * input["width"].get<int>();
  o.input_height = 2 * input["height"].get<int>();
  Detector det(testing::trained_square_model(), o);
  cv::Mat big;
  cv::resize(picture(), big, cv::Size(320, 240));
  auto found = det.detect(ImageView::packed(PixelFormat::kBGR, big.data, big.cols, big.rows));
  ASSERT_FALSE(found.empty());
  EXPECT_GT(iou(found[0], cv::Rect2f(100, 60, 100, 100)), 0.6);
  // Sizes the network cannot take are named errors.
  o.input_width = 100;
  try {
    Detector bad(testing::trained_square_model(), o);
    FAIL() << "accepted a 100-pixel-wide input";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
  }
}

TEST_F(DetectorTest, BadFramesAreNamedErrors) {
  Detector det(testing::trained_square_model());
  std::vector<uint8_t> px(64 * 48 * 3);
  auto expect_msg = [&](const ImageView& v, const std::string& part) {
    try {
      det.detect(v);
      FAIL() << "accepted a bad frame";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg(ImageView::packed(PixelFormat::kRGB, px.data(), 0, 48), "image size must be 1..65536");
  expect_msg(ImageView::packed(PixelFormat::kRGB, nullptr, 64, 48), "plane 0 is null");
  expect_msg(ImageView::packed(PixelFormat::kRGB, px.data(), 64, 48, 100), "stride");
  EXPECT_THROW(parse_pixel_format("YUY2"), std::invalid_argument);
}

TEST_F(DetectorTest, DeviceOptions) {
  EXPECT_THROW(Detector(testing::trained_square_model(), DetectorOptions{"gpu"}),
               std::invalid_argument);
  EXPECT_THROW(Detector(testing::trained_square_model(), DetectorOptions{"cuda:x"}),
               std::invalid_argument);
  if (torch::cuda::is_available()) {
    // With CUDA: the device is taken, and one past the last is the named error.
    Detector on_gpu(testing::trained_square_model(), DetectorOptions{"cuda:0"});
    const std::string beyond = "cuda:" + std::to_string(torch::cuda::device_count());
    try {
      Detector det(testing::trained_square_model(), DetectorOptions{beyond});
      FAIL() << beyond << " accepted";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find("CUDA device(s) are present"), std::string::npos)
          << e.what();
    }
    return;
  }
  try {
    Detector det(testing::trained_square_model(), DetectorOptions{"cuda:0"});
    FAIL() << "cuda accepted without CUDA";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA"), std::string::npos) << e.what();
  }
}

TEST_F(DetectorTest, MissingModelFileIsNamed) {
  try {
    Detector det("/nonexistent/model.pt");
    FAIL();
  } catch (const ModelFileError& e) {
    EXPECT_EQ(e.kind(), ModelFileError::Kind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.pt"), std::string::npos);
  }
}

}  // namespace
}  // namespace autoassign
