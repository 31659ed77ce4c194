// SPDX-License-Identifier: MIT
// What every gst test file shares: frames in any format from a BGR picture, caps strings, ROI
// helpers, a detect harness and the GstElements fixture (a model trained on one square).
// main() (harness.cpp) initialises GStreamer and registers the plugin statically.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <thread>

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/detector.h"
#include "fixtures.h"
#include "frame_json.h"
#include "gstautoassigndetect.h"
#include "inference_mark.h"
#include "plugin.h"
#include "roi_meta.h"

namespace autoassign {
namespace fs = std::filesystem;

inline const cv::Rect kSquare(50, 30, 50, 50);

// A frame of `format` holding the BGR picture, laid out as GstVideoInfo says.
inline GstBuffer* make_frame(const cv::Mat& bgr, GstVideoFormat format) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, static_cast<guint>(bgr.cols),
                            static_cast<guint>(bgr.rows));
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, info.size, nullptr);
  GstVideoFrame frame;
  gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE);
  auto copy_plane = [&](const cv::Mat& src, guint p) {
    auto* dst = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, p));
    const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, p);
    for (int r = 0; r < src.rows; ++r)
      std::memcpy(dst + r * stride, src.ptr(r), src.cols * src.elemSize());
  };
  cv::Mat tmp;
  const int w = bgr.cols, h = bgr.rows;
  switch (format) {
    case GST_VIDEO_FORMAT_BGR:
      copy_plane(bgr, 0);
      break;
    case GST_VIDEO_FORMAT_RGB:
      cv::cvtColor(bgr, tmp, cv::COLOR_BGR2RGB);
      copy_plane(tmp, 0);
      break;
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_RGBA:
      cv::cvtColor(bgr, tmp, cv::COLOR_BGR2RGBA);
      copy_plane(tmp, 0);
      break;
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_BGRA:
      cv::cvtColor(bgr, tmp, cv::COLOR_BGR2BGRA);
      copy_plane(tmp, 0);
      break;
    case GST_VIDEO_FORMAT_NV12:
    case GST_VIDEO_FORMAT_I420: {
      cv::cvtColor(bgr, tmp, cv::COLOR_BGR2YUV_I420);
      copy_plane(tmp.rowRange(0, h), 0);
      cv::Mat u(h / 2, w / 2, CV_8UC1, tmp.ptr(h)),
          v(h / 2, w / 2, CV_8UC1, tmp.ptr(h) + (w / 2) * (h / 2));
      if (format == GST_VIDEO_FORMAT_I420) {
        copy_plane(u, 1);
        copy_plane(v, 2);
      } else {
        cv::Mat uv;
        cv::merge(std::vector<cv::Mat>{u, v}, uv);
        copy_plane(uv, 1);
      }
      break;
    }
    default:
      ADD_FAILURE() << "format not handled by the test";
  }
  gst_video_frame_unmap(&frame);
  return buf;
}

inline std::string caps_for(GstVideoFormat format, int w, int h) {
  return std::string("video/x-raw,format=") + gst_video_format_to_string(format) +
         ",width=" + std::to_string(w) + ",height=" + std::to_string(h) + ",framerate=30/1";
}

// The roi_type of a buffer's first ROI meta, "" when it has none (a failure, not a crash).
inline std::string first_roi_type(GstBuffer* buffer) {
  const auto rois = gst::read_rois(buffer);
  return rois.empty() ? std::string() : rois[0].roi_type;
}

inline double iou(const gst::Roi& r, const cv::Rect& b) {
  const cv::Rect a(r.x, r.y, r.w, r.h);
  const double inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

inline GstHarness* detect_harness(const std::string& model, const char* extra_property = nullptr,
                                  double value = 0) {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", model.c_str(), "threshold", 0.3, "threads", 2, nullptr);
  if (extra_property) g_object_set(e, extra_property, value, nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  return h;
}

class GstElements : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { testing::trained_square_model(); }
  cv::Mat picture(int w = 160, int h = 120) const {
    return testing::square_picture(w, h, kSquare, 99);
  }
  // The picture at twice its size (320x240) in `format` through `h`: the square must come out
  // doubled too, at (100, 60) 100x100.
  void expect_doubled_square(GstHarness* h, GstVideoFormat format) const {
    cv::Mat big;
    cv::resize(picture(), big, cv::Size(320, 240));
    gst_harness_set_src_caps_str(h, caps_for(format, 320, 240).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(big, format)), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    const auto rois = gst::read_rois(out);
    gst_buffer_unref(out);
    ASSERT_FALSE(rois.empty());
    EXPECT_GT(iou(rois[0], cv::Rect(100, 60, 100, 100)), 0.6);
  }
};

}  // namespace autoassign
