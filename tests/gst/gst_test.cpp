// SPDX-License-Identifier: MIT
// The elements through GstHarness, with the plugin registered statically and a tiny model
// trained in-process to find a bright square.
#include <arpa/inet.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
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

#include "autoassign/checkpoint.h"
#include "autoassign/detector.h"
#include "fixtures.h"
#include "gstautoassigndetect.h"
#include "plugin.h"
#include "roi.h"

namespace autoassign {
namespace {
namespace fs = std::filesystem;

const cv::Rect kSquare(50, 30, 50, 50);

// A frame of `format` holding the BGR picture, laid out as GstVideoInfo says.
GstBuffer* make_frame(const cv::Mat& bgr, GstVideoFormat format) {
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

std::string caps_for(GstVideoFormat format, int w, int h) {
  return std::string("video/x-raw,format=") + gst_video_format_to_string(format) +
         ",width=" + std::to_string(w) + ",height=" + std::to_string(h) + ",framerate=30/1";
}

// The roi_type of a buffer's first ROI meta, "" when it has none (a failure, not a crash).
std::string first_roi_type(GstBuffer* buffer) {
  const auto rois = gst::read_rois(buffer);
  return rois.empty() ? std::string() : rois[0].roi_type;
}

double iou(const gst::Roi& r, const cv::Rect& b) {
  const cv::Rect a(r.x, r.y, r.w, r.h);
  const double inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

GstHarness* detect_harness(const std::string& model, const char* extra_property = nullptr,
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

TEST_F(GstElements, EveryListedFormatGivesTheSquare) {
  for (GstVideoFormat f : {GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_RGBx,
                           GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGRA,
                           GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420}) {
    SCOPED_TRACE(gst_video_format_to_string(f));
    GstHarness* h = detect_harness(testing::trained_square_model());
    gst_harness_set_src_caps_str(h, caps_for(f, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), f)), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    const auto rois = gst::read_rois(out);
    ASSERT_FALSE(rois.empty());
    const auto& best =
        *std::max_element(rois.begin(), rois.end(),
                          [](const auto& a, const auto& b) { return a.confidence < b.confidence; });
    EXPECT_GT(iou(best, kSquare), 0.6);
    EXPECT_EQ(best.roi_type, "square");
    EXPECT_TRUE(best.has_detection);
    EXPECT_EQ(best.label, "square");
    EXPECT_EQ(best.label_id, 0);
    EXPECT_GE(best.confidence, 0.3);
    for (const auto& r : rois) {
      EXPECT_GE(r.x, 0);
      EXPECT_GE(r.y, 0);
      EXPECT_LE(r.x + r.w, 160);
      EXPECT_LE(r.y + r.h, 120);
      EXPECT_GE(r.x_min, 0.0);
      EXPECT_LE(r.x_max, 1.0);
      // The normalised box and the pixel box describe the same region.
      EXPECT_NEAR(r.x_min * 160, r.x, 1.0);
      EXPECT_NEAR(r.y_max * 120, r.y + r.h, 1.0);
    }
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
}

TEST_F(GstElements, OtherFormatsAreRejected) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  GstCaps* yuy2 = gst_caps_from_string(caps_for(GST_VIDEO_FORMAT_YUY2, 160, 120).c_str());
  GstCaps* gray = gst_caps_from_string(caps_for(GST_VIDEO_FORMAT_GRAY8, 160, 120).c_str());
  GstCaps* nv12 = gst_caps_from_string(caps_for(GST_VIDEO_FORMAT_NV12, 160, 120).c_str());
  GstPad* sink = gst_element_get_static_pad(h->element, "sink");
  EXPECT_FALSE(gst_pad_query_accept_caps(sink, yuy2));
  EXPECT_FALSE(gst_pad_query_accept_caps(sink, gray));
  EXPECT_TRUE(gst_pad_query_accept_caps(sink, nv12));
  gst_object_unref(sink);
  gst_caps_unref(yuy2);
  gst_caps_unref(gray);
  gst_caps_unref(nv12);
  gst_harness_teardown(h);
}

TEST_F(GstElements, PixelsTimestampsAndFlagsPassUnchanged) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGRx, 160, 120).c_str());
  GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_BGRx);
  GST_BUFFER_PTS(in) = 123 * GST_MSECOND;
  GST_BUFFER_DTS(in) = 120 * GST_MSECOND;
  GST_BUFFER_DURATION(in) = 33 * GST_MSECOND;
  GST_BUFFER_FLAG_SET(in, GST_BUFFER_FLAG_DISCONT);
  GST_BUFFER_FLAG_SET(in, GST_BUFFER_FLAG_DELTA_UNIT);
  GstMapInfo m;
  gst_buffer_map(in, &m, GST_MAP_READ);
  const std::vector<uint8_t> before(m.data, m.data + m.size);
  gst_buffer_unmap(in, &m);
  ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  EXPECT_EQ(GST_BUFFER_PTS(out), 123 * GST_MSECOND);
  EXPECT_EQ(GST_BUFFER_DTS(out), 120 * GST_MSECOND);
  EXPECT_EQ(GST_BUFFER_DURATION(out), 33 * GST_MSECOND);
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(out, GST_BUFFER_FLAG_DISCONT));
  EXPECT_TRUE(GST_BUFFER_FLAG_IS_SET(out, GST_BUFFER_FLAG_DELTA_UNIT));
  gst_buffer_map(out, &m, GST_MAP_READ);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), m.data));
  gst_buffer_unmap(out, &m);
  EXPECT_FALSE(gst::read_rois(out).empty());
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

// READY->PAUSED with a bad model: fails with the error domain/code, the message names the
// path, and NULL<->READY still cycles.
void expect_start_error(const std::string& model, const std::string& device, GQuark domain,
                        int code, const std::string& text, const std::string& labels = "",
                        const std::string& input_size = "") {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", model.c_str(), "device", device.c_str(), nullptr);
  if (!labels.empty()) g_object_set(e, "labels-file", labels.c_str(), nullptr);
  if (!input_size.empty()) g_object_set(e, "input-size", input_size.c_str(), nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  ASSERT_EQ(gst_element_set_state(e, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  EXPECT_EQ(gst_element_set_state(e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr);
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  EXPECT_EQ(err->domain, domain) << err->message;
  EXPECT_EQ(err->code, code) << err->message;
  EXPECT_NE(std::string(err->message).find(text), std::string::npos) << err->message;
  g_error_free(err);
  gst_message_unref(msg);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(gst_element_set_state(e, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    EXPECT_EQ(gst_element_set_state(e, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  }
  gst_element_set_state(e, GST_STATE_NULL);
  gst_element_set_bus(e, nullptr);
  gst_object_unref(bus);
  gst_object_unref(e);
}

TEST_F(GstElements, LabelsFileRenamesOrFailsClearly) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/one.txt") << "box\n";
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", testing::trained_square_model().c_str(), "threshold", 0.3,
               "labels-file", (dir + "/one.txt").c_str(), nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  const auto rois = gst::read_rois(out);
  ASSERT_FALSE(rois.empty());
  EXPECT_EQ(rois[0].roi_type, "box");
  EXPECT_EQ(rois[0].label, "box");
  gst_buffer_unref(out);
  gst_harness_teardown(h);
  // Missing: NOT_FOUND naming the file. Wrong number of names: SETTINGS saying so.
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_NOT_FOUND, dir + "/none.txt", dir + "/none.txt");
  std::ofstream(dir + "/two.txt") << "a\nb\n";
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "1 classes but 2 label names", dir + "/two.txt");
}

// Text that is not UTF-8, from each place it can come in: a labels-file line, another
// element's ROI meta (roi_type and detection label), the json element's source property. Each
// used to abort the process (json type_error.316 thrown inside a GStreamer callback); now the
// bad bytes become U+FFFD, the JSON stays valid and the labels warning names the line.
TEST_F(GstElements, TextThatIsNotUtf8NeverAborts) {
  const std::string dir = testing::temp_dir();
  // The model has one class: an empty line 1 (skipped, but counted), a bad line 2.
  std::ofstream(dir + "/one-bad.txt") << "\n"
                                      << "b\xc3\x28x\n";
  const std::string path = dir + "/out.jsonl";
  GstElement* bin = gst_parse_bin_from_description(
      ("autoassigndetect threshold=0.3 model-file=" + testing::trained_square_model() +
       " labels-file=" + dir + "/one-bad.txt ! autoassignjson name=j location=" + path)
          .c_str(),
      TRUE, nullptr);
  ASSERT_NE(bin, nullptr);
  GstElement* j = gst_bin_get_by_name(GST_BIN(bin), "j");
  g_object_set(j, "source",
               "cam\xfe"
               "1",
               nullptr);
  gst_object_unref(j);
  // The bus first: the harness starts the element (and the model loads) as it is created.
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(bin, bus);
  GstHarness* h = gst_harness_new_with_element(bin, "sink", "src");
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  // A frame carrying a foreign ROI meta whose type is not UTF-8 (a GQuark takes any bytes;
  // GstStructure itself refuses such strings in its fields, so the label cannot be bad).
  GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_BGR);
  gst_buffer_add_video_region_of_interest_meta(in, "per\xe2\x82son", 1, 2, 30, 40);
  ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  gst_buffer_unref(out);
  // The warning names the file and line 2.
  bool warned = false;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING)) {
    GError* err = nullptr;
    gst_message_parse_warning(m, &err, nullptr);
    const std::string text = err->message;
    warned |= text.find("one-bad.txt' line 2 is not valid UTF-8") != std::string::npos;
    g_error_free(err);
    gst_message_unref(m);
  }
  EXPECT_TRUE(warned);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
  gst_object_unref(bin);
  std::ifstream lines(path);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  const auto doc = nlohmann::json::parse(line);  // throws if not valid UTF-8 JSON
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(doc["source"], "cam" + fffd + "1");
  std::set<std::string> types, labels;
  for (const auto& o : doc["objects"]) {
    types.insert(o["roi_type"].get<std::string>());
    if (o.contains("detection")) labels.insert(o["detection"]["label"].get<std::string>());
  }
  // "\xe2\x82s" is a truncated 3-byte sequence: one U+FFFD for the lead byte, one for the
  // stray continuation byte, then "s".
  EXPECT_TRUE(types.count("per" + fffd + fffd + "son")) << line;
  EXPECT_TRUE(labels.count("b" + fffd + "(x")) << line;  // the model's own detection
}

TEST_F(GstElements, InputSizeProperty) {
  // The model's input doubled on a frame twice as large: the square is found where it is.
  const auto input =
      nlohmann::json::parse(Detector(testing::trained_square_model()).info().config_json)["input"];
  const std::string size = std::to_string(2 * input["width"].get<int>()) + "x" +
                           std::to_string(2 * input["height"].get<int>());
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", testing::trained_square_model().c_str(), "threshold", 0.3,
               "input-size", size.c_str(), nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  expect_doubled_square(h, GST_VIDEO_FORMAT_BGR);
  gst_harness_teardown(h);
  // A size the network cannot take fails the start, naming the reason.
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "multiple of 32", "", "100x64");
}

TEST_F(GstElements, BadModelsFailReadyToPaused) {
  const std::string dir = testing::temp_dir();
  expect_start_error(dir + "/missing.pt", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
                     dir + "/missing.pt");
  std::ofstream(dir + "/corrupt.pt") << "not a model";
  expect_start_error(dir + "/corrupt.pt", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ,
                     dir + "/corrupt.pt");
  const std::string truncated = dir + "/truncated.pt";
  fs::copy_file(testing::trained_square_model(), truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  expect_start_error(truncated, "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ, truncated);
  {
    // A model file of a later format version, and one of the LibTorch-archive format (v1),
    // which the element never opens: loading it could run code.
    auto model = load_model(testing::trained_square_model());
    write_tensor_file(dir + "/v3.pt",
                      {{"format", kModelFormatTag},
                       {"format_version", "3"},
                       {"config", model->config().to_json()}},
                      module_tensors(*model));
    torch::serialize::OutputArchive archive, weights;
    archive.write("format", c10::IValue(std::string(kModelFormatTag)));
    archive.write("format_version", c10::IValue(int64_t{1}));
    archive.write("config", c10::IValue(model->config().to_json()));
    model->save(weights);
    archive.write("model", weights);
    archive.save_to(dir + "/v1.pt");
  }
  expect_start_error(dir + "/v3.pt", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                     "format version '3'");
  expect_start_error(dir + "/v1.pt", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                     "autoassign convert");
  expect_start_error("", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, "no model-file");
  if (!torch::cuda::is_available()) {
    expect_start_error(testing::trained_square_model(), "cuda", GST_LIBRARY_ERROR,
                       GST_LIBRARY_ERROR_INIT, "CUDA");
  }
  expect_start_error(testing::trained_square_model(), "tpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "invalid device 'tpu'");
}

TEST_F(GstElements, ResolutionAndFormatChangeMidStream) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* a = gst_harness_pull(h);
  ASSERT_FALSE(gst::read_rois(a).empty());
  EXPECT_GT(iou(gst::read_rois(a)[0], kSquare), 0.6);
  gst_buffer_unref(a);
  // Twice the size, NV12: the square doubles too.
  expect_doubled_square(h, GST_VIDEO_FORMAT_NV12);
  gst_harness_teardown(h);
}

TEST_F(GstElements, InferenceIntervalAndRepeatMetadata) {
  for (const bool repeat : {false, true}) {
    GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
    g_object_set(e, "model-file", testing::trained_square_model().c_str(), "threshold", 0.3,
                 "inference-interval", 3u, "repeat-metadata", repeat, nullptr);
    GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
    gst_object_unref(e);
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    std::vector<size_t> counts;
    for (int i = 0; i < 7; ++i) {
      GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_BGR);
      GST_BUFFER_PTS(in) = static_cast<GstClockTime>(i) * 40 * GST_MSECOND;
      ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
      GstBuffer* out = gst_harness_pull(h);
      const auto rois = gst::read_rois(out);
      counts.push_back(rois.size());
      // Each box says which frame it was computed on: the last inferred one (0, 3, 6).
      for (const auto& r : rois) {
        EXPECT_EQ(r.source_pts, static_cast<GstClockTime>(i / 3 * 3) * 40 * GST_MSECOND)
            << "frame " << i;
      }
      gst_buffer_unref(out);
    }
    for (int i = 0; i < 7; ++i) {
      if (i % 3 == 0 || repeat) {
        EXPECT_GT(counts[i], 0u) << "frame " << i << " repeat " << repeat;
        EXPECT_EQ(counts[i], counts[0]) << "frame " << i;
      } else {
        EXPECT_EQ(counts[i], 0u) << "frame " << i;
      }
    }
    gst_harness_teardown(h);
  }
}

// After a flush (a seek), the boxes of the old stream are not repeated onto the new one and
// the inference interval counts from the new stream's first frame: here that frame is blank,
// so it must come out with no box. Before the element handled sink events, frame 2 of the
// interval repeated the old stream's square onto it.
TEST_F(GstElements, FlushForgetsTheOldStreamsBoxes) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  g_object_set(h->element, "inference-interval", 3u, "repeat-metadata", TRUE, nullptr);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    EXPECT_FALSE(gst::read_rois(out).empty()) << "frame " << i;  // inferred, then repeated
    gst_buffer_unref(out);
  }
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&segment)));
  const cv::Mat blank(120, 160, CV_8UC3, cv::Scalar(128, 128, 128));
  ASSERT_EQ(gst_harness_push(h, make_frame(blank, GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  EXPECT_TRUE(gst::read_rois(out).empty());
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

// A synchronous bus handler runs on the thread that posts: the model loader's. One that sets
// model-file again from there made the element join the loader thread from itself
// (std::system_error thrown through GObject's C code: abort). Now the second reload happens.
TEST_F(GstElements, ReloadFromTheLoadersOwnBusHandler) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  struct State {
    GstElement* element;
    std::string model;
    std::atomic<int> loaded{0};
  } state{h->element, testing::trained_square_model()};
  gst_bus_set_sync_handler(
      bus,
      [](GstBus*, GstMessage* m, gpointer data) -> GstBusSyncReply {
        auto* st = static_cast<State*>(data);
        const GstStructure* s = gst_message_get_structure(m);
        if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT && s &&
            gst_structure_has_name(s, "autoassign-model-loaded")) {
          if (st->loaded++ == 0) {
            g_object_set(st->element, "model-file", st->model.c_str(), nullptr);
          }
        }
        return GST_BUS_DROP;
      },
      &state, nullptr);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  g_object_set(h->element, "model-file", testing::trained_square_model().c_str(), nullptr);
  for (int i = 0; i < 300 && state.loaded < 2; ++i) g_usleep(100000);
  EXPECT_EQ(state.loaded.load(), 2);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  EXPECT_FALSE(gst::read_rois(out).empty());
  gst_buffer_unref(out);
  gst_harness_teardown(h);
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
}

TEST_F(GstElements, ThresholdChangeAppliesToTheNextFrame) {
  GstHarness* h = detect_harness(testing::trained_square_model(), "threshold", 0.0);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  g_object_set(h->element, "max-detections", 50, nullptr);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* a = gst_harness_pull(h);
  EXPECT_EQ(gst::read_rois(a).size(), 50u);
  gst_buffer_unref(a);
  g_object_set(h->element, "threshold", 0.3, nullptr);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* b = gst_harness_pull(h);
  const auto rois = gst::read_rois(b);
  EXPECT_GE(rois.size(), 1u);
  EXPECT_LT(rois.size(), 5u);
  for (const auto& r : rois) EXPECT_GE(r.confidence, 0.3);
  gst_buffer_unref(b);
  gst_harness_teardown(h);
}

TEST_F(GstElements, ModelReloadWhilePlaying) {
  const std::string dir = testing::temp_dir();
  // The same weights under other label names: the swap is visible in roi_type.
  auto model = load_model(testing::trained_square_model());
  ModelConfig c = model->config();
  c.class_names = {"box"};
  AutoAssign renamed(c);
  {
    torch::NoGradGuard g;
    auto src = model->named_parameters();
    for (auto& p : renamed->named_parameters()) p.value().copy_(*src.find(p.key()));
    auto bsrc = model->named_buffers();
    for (auto& b : renamed->named_buffers()) b.value().copy_(*bsrc.find(b.key()));
  }
  save_model(dir + "/renamed.pt", renamed);
  GstHarness* h = detect_harness(testing::trained_square_model());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* a = gst_harness_pull(h);
  EXPECT_EQ(first_roi_type(a), "square");
  gst_buffer_unref(a);
  g_object_set(h->element, "model-file", (dir + "/renamed.pt").c_str(), nullptr);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND, GST_MESSAGE_ELEMENT);
  ASSERT_NE(msg, nullptr);
  EXPECT_TRUE(gst_structure_has_name(gst_message_get_structure(msg), "autoassign-model-loaded"));
  gst_message_unref(msg);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* b = gst_harness_pull(h);
  EXPECT_EQ(first_roi_type(b), "box");
  gst_buffer_unref(b);
  // A bad path while playing: an error naming the file (RESOURCE NOT_FOUND, as at start),
  // and until the application acts on it the running model keeps serving frames.
  g_object_set(h->element, "model-file", (dir + "/nope.pt").c_str(), nullptr);
  msg = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr);
  {
    GError* err = nullptr;
    gst_message_parse_error(msg, &err, nullptr);
    EXPECT_TRUE(g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND));
    EXPECT_NE(std::string(err->message).find("nope.pt"), std::string::npos) << err->message;
    g_error_free(err);
  }
  gst_message_unref(msg);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* c2 = gst_harness_pull(h);
  EXPECT_EQ(first_roi_type(c2), "box");
  gst_buffer_unref(c2);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// Pushes a frame with one hand-made ROI through the overlay; returns the changed-pixel mask.
cv::Mat overlay_changes(GstVideoFormat format, bool captions) {
  GstHarness* h = gst_harness_new("autoassignoverlay");
  g_object_set(h->element, "show-labels", captions, "show-confidence", captions, "line-width", 2,
               nullptr);
  gst_harness_set_src_caps_str(h, caps_for(format, 160, 120).c_str());
  cv::Mat bgr = testing::square_picture(160, 120, kSquare, 3);
  GstBuffer* in = make_frame(bgr, format);
  GstBuffer* ref = gst_buffer_copy_deep(in);
  auto* meta = gst_buffer_add_video_region_of_interest_meta(in, "thing", 40, 50, 60, 40);
  gst_video_region_of_interest_meta_add_param(
      meta, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 0.87, "label_id",
                              G_TYPE_INT, 1, "label", G_TYPE_STRING, "thing", nullptr));
  EXPECT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, 160, 120);
  GstVideoFrame fa, fb;
  gst_video_frame_map(&fa, &info, ref, GST_MAP_READ);
  gst_video_frame_map(&fb, &info, out, GST_MAP_READ);
  // Per image pixel: changed if any byte of any plane covering it changed.
  cv::Mat changed(120, 160, CV_8UC1, cv::Scalar(0));
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(&fa); ++p) {
    const int pw = GST_VIDEO_FRAME_COMP_WIDTH(&fa, p), ph = GST_VIDEO_FRAME_COMP_HEIGHT(&fa, p);
    const int ps =
        GST_VIDEO_FRAME_COMP_PSTRIDE(&fa, p) * (format == GST_VIDEO_FORMAT_NV12 && p == 1 ? 1 : 1);
    const int bytes = (p == 1 && format == GST_VIDEO_FORMAT_NV12) ? 2 : ps;
    const int sx = 160 / pw, sy = 120 / ph;
    for (int y = 0; y < ph; ++y) {
      const auto* ra = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&fa, p)) +
                       y * GST_VIDEO_FRAME_PLANE_STRIDE(&fa, p);
      const auto* rb = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&fb, p)) +
                       y * GST_VIDEO_FRAME_PLANE_STRIDE(&fb, p);
      for (int x = 0; x < pw; ++x) {
        if (std::memcmp(ra + x * bytes, rb + x * bytes, static_cast<size_t>(bytes)) != 0) {
          changed(cv::Rect(x * sx, y * sy, sx, sy)).setTo(255);
        }
      }
    }
  }
  gst_video_frame_unmap(&fa);
  gst_video_frame_unmap(&fb);
  gst_buffer_unref(ref);
  gst_buffer_unref(out);
  gst_harness_teardown(h);
  return changed;
}

TEST_F(GstElements, OverlayDrawsOnTheBoxesOnly) {
  for (GstVideoFormat f : {GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_RGBx,
                           GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGRA,
                           GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420}) {
    SCOPED_TRACE(gst_video_format_to_string(f));
    const cv::Mat changed = overlay_changes(f, /*captions=*/false);
    // The outline (2 px, centred on the border; chroma planes at 2x2 granularity) stays
    // within the box grown by 2 px, and the box interior away from the outline is untouched.
    const cv::Rect grown(38, 48, 64, 44);
    cv::Mat outside = changed.clone();
    outside(grown).setTo(0);
    EXPECT_EQ(cv::countNonZero(outside), 0);
    EXPECT_EQ(cv::countNonZero(changed(cv::Rect(46, 56, 48, 28))), 0);
    EXPECT_GT(cv::countNonZero(changed), 2 * (60 + 40));
    // With captions, the bar above the box changes too, and still nothing else.
    const cv::Mat with_text = overlay_changes(f, /*captions=*/true);
    cv::Mat beyond = with_text.clone();
    beyond(grown).setTo(0);
    // The caption bar sits on the box's top-left corner: as wide as the text "thing 0.87".
    int baseline = 0;
    const cv::Size ts = cv::getTextSize("thing 0.87", cv::FONT_HERSHEY_SIMPLEX, 0.5, 1, &baseline);
    const cv::Rect bar(38, 50 - ts.height - baseline - 4, ts.width + 8, ts.height + baseline + 6);
    beyond(bar & cv::Rect(0, 0, 160, 120)).setTo(0);
    EXPECT_EQ(cv::countNonZero(beyond), 0);
    EXPECT_GT(cv::countNonZero(with_text(bar & cv::Rect(0, 0, 160, 120))), ts.area() / 2);
  }
}

TEST_F(GstElements, OverlayUsesOneColourPerLabel) {
  // Three boxes on a grey RGB frame: labels 0, 1, 0. The outlines of the two label-0 boxes
  // share a colour; the label-1 box has another; none is the background's.
  GstHarness* h = gst_harness_new("autoassignoverlay");
  g_object_set(h->element, "show-labels", FALSE, "show-confidence", FALSE, "line-width", 2,
               nullptr);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_RGB, 160, 120).c_str());
  GstBuffer* in =
      make_frame(cv::Mat(120, 160, CV_8UC3, cv::Scalar(128, 128, 128)), GST_VIDEO_FORMAT_RGB);
  const int xs[3] = {10, 60, 110}, labels[3] = {0, 1, 0};
  const char* names[3] = {"a", "b", "a"};
  for (int i = 0; i < 3; ++i) {
    auto* meta = gst_buffer_add_video_region_of_interest_meta(in, names[i], xs[i], 40, 40, 40);
    gst_video_region_of_interest_meta_add_param(
        meta, gst_structure_new("detection", "confidence", G_TYPE_DOUBLE, 0.9, "label_id",
                                G_TYPE_INT, labels[i], "label", G_TYPE_STRING, names[i], nullptr));
  }
  ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, 160, 120);
  GstVideoFrame f;
  ASSERT_TRUE(gst_video_frame_map(&f, &info, out, GST_MAP_READ));
  auto pixel = [&](int x, int y) {
    const auto* p = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&f, 0)) +
                    y * GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0) + 3 * x;
    return std::array<int, 3>{p[0], p[1], p[2]};
  };
  // The middle of each box's top edge (the outline is centred on the border).
  const auto c0 = pixel(xs[0] + 20, 40), c1 = pixel(xs[1] + 20, 40), c2 = pixel(xs[2] + 20, 40);
  const std::array<int, 3> grey = {128, 128, 128};
  EXPECT_EQ(c0, c2);
  EXPECT_NE(c0, c1);
  EXPECT_NE(c0, grey);
  EXPECT_NE(c1, grey);
  gst_video_frame_unmap(&f);
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

TEST_F(GstElements, JsonLinesMatchTheMetas) {
  const std::string path = testing::temp_dir() + "/out.jsonl";
  GstElement* bin = gst_parse_bin_from_description(
      ("autoassigndetect threshold=0.3 model-file=" + testing::trained_square_model() +
       " ! autoassignjson post-messages=true location=" + path)
          .c_str(),
      TRUE, nullptr);
  ASSERT_NE(bin, nullptr);
  GstHarness* h = gst_harness_new_with_element(bin, "sink", "src");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_I420, 160, 120).c_str());
  std::vector<std::vector<gst::Roi>> sent;
  for (int i = 0; i < 3; ++i) {
    GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_I420);
    GST_BUFFER_PTS(in) = static_cast<GstClockTime>(i) * 40 * GST_MSECOND;
    ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    sent.push_back(gst::read_rois(out));
    gst_buffer_unref(out);
  }
  gst_element_set_bus(h->element, nullptr);
  gst_harness_teardown(h);
  gst_object_unref(bin);
  std::ifstream in(path);
  std::string line;
  int n = 0;
  size_t objects = 0;
  while (std::getline(in, line)) {
    ASSERT_LT(n, 3) << "more lines than frames";
    ASSERT_FALSE(sent[n].empty()) << "frame " << n << " has no detection to compare";
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["timestamp"].get<int64_t>(), n * 40 * static_cast<int64_t>(GST_MSECOND));
    EXPECT_EQ(j["resolution"]["width"], 160);
    EXPECT_EQ(j["resolution"]["height"], 120);
    ASSERT_EQ(j["objects"].size(), sent[n].size());
    for (size_t k = 0; k < sent[n].size(); ++k) {
      const auto& o = j["objects"][k];
      const auto& r = sent[n][k];
      EXPECT_EQ(o["x"], r.x);
      EXPECT_EQ(o["y"], r.y);
      EXPECT_EQ(o["w"], r.w);
      EXPECT_EQ(o["h"], r.h);
      EXPECT_EQ(o["roi_type"], r.roi_type);
      const auto& det = o["detection"];
      EXPECT_DOUBLE_EQ(det["confidence"].get<double>(), r.confidence);
      EXPECT_DOUBLE_EQ(det["bounding_box"]["x_min"].get<double>(), r.x_min);
      EXPECT_DOUBLE_EQ(det["bounding_box"]["y_min"].get<double>(), r.y_min);
      EXPECT_DOUBLE_EQ(det["bounding_box"]["x_max"].get<double>(), r.x_max);
      EXPECT_DOUBLE_EQ(det["bounding_box"]["y_max"].get<double>(), r.y_max);
      EXPECT_EQ(det["label"], "square");
      EXPECT_EQ(det["label_id"], 0);
      // The pixel box and the normalised one describe the same region (to a pixel).
      EXPECT_NEAR(det["bounding_box"]["x_min"].get<double>() * 160, o["x"].get<double>(), 1.0);
      EXPECT_NEAR(det["bounding_box"]["y_max"].get<double>() * 120,
                  o["y"].get<double>() + o["h"].get<double>(), 1.0);
    }
    objects += sent[n].size();
    ++n;
  }
  EXPECT_EQ(n, 3);
  // One element message per object.
  size_t messages = 0;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    if (gst_structure_has_name(gst_message_get_structure(m), "autoassign-object")) ++messages;
    gst_message_unref(m);
  }
  EXPECT_EQ(messages, objects);
  gst_object_unref(bus);
}

// Pushes one 160x120 BGRx frame with the square through `appsrc ! CHAIN ! appsink` (a real
// pipeline) and returns the ROIs of what comes out, and its width in `out_width`.
std::vector<gst::Roi> rois_through(const std::string& chain, int* out_width) {
  const std::string model = testing::trained_square_model();
  std::string desc =
      "appsrc name=src format=time caps=video/x-raw,format=BGRx,width=160,height=120,"
      "framerate=30/1 ! " +
      chain + " ! appsink name=sink";
  desc.replace(desc.find("MODEL"), 5, model);
  GstElement* p = gst_parse_launch(desc.c_str(), nullptr);
  std::vector<gst::Roi> rois;
  if (!p) {
    ADD_FAILURE() << "pipeline did not parse: " << chain;
    return rois;
  }
  GstElement* src = gst_bin_get_by_name(GST_BIN(p), "src");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  EXPECT_NE(gst_element_set_state(p, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  GstBuffer* in = make_frame(testing::square_picture(160, 120, kSquare, 99), GST_VIDEO_FORMAT_BGRx);
  GST_BUFFER_PTS(in) = 0;
  GstFlowReturn ret;
  g_signal_emit_by_name(src, "push-buffer", in, &ret);
  gst_buffer_unref(in);
  GstSample* sample = nullptr;
  // With a timeout: a pipeline that stalls fails here instead of hanging the suite.
  g_signal_emit_by_name(sink, "try-pull-sample", 30 * GST_SECOND, &sample);
  EXPECT_NE(sample, nullptr) << chain;
  if (sample) {
    GstVideoInfo info;
    gst_video_info_from_caps(&info, gst_sample_get_caps(sample));
    *out_width = GST_VIDEO_INFO_WIDTH(&info);
    rois = gst::read_rois(gst_sample_get_buffer(sample));
    gst_sample_unref(sample);
  }
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_object_unref(p);
  return rois;
}

TEST_F(GstElements, BoxesSurviveVideoscale) {
  // The ROI meta's own scale transform moves the boxes with the frame.
  int width = 0;
  const auto rois = rois_through(
      "autoassigndetect threshold=0.3 model-file=MODEL ! videoscale ! "
      "video/x-raw,width=320,height=240",
      &width);
  EXPECT_EQ(width, 320);
  ASSERT_FALSE(rois.empty());
  EXPECT_GT(iou(rois[0], cv::Rect(100, 60, 100, 100)), 0.6);  // scaled with the frame
  EXPECT_EQ(rois[0].roi_type, "square");
  // GStreamer 1.22's scale transform of the ROI meta keeps the box and roi_type but not the
  // parameter structures (confidence, label_id); where a GStreamer keeps them, the normalised
  // box must still be the same fraction of the frame.
  // Each branch is pinned to the GStreamer it describes, so neither can pass vacuously: on
  // 1.22 the structures must be gone (the README documents it), later the box must be right.
  guint major = 0, minor = 0, micro = 0, nano = 0;
  gst_version(&major, &minor, &micro, &nano);
  if (major == 1 && minor <= 22) {
    EXPECT_FALSE(rois[0].has_detection) << "GStreamer now keeps the params: update the README";
  } else {
    ASSERT_TRUE(rois[0].has_detection);
    EXPECT_NEAR(rois[0].x_min, kSquare.x / 160.0, 0.05);
    EXPECT_NEAR(rois[0].y_max, (kSquare.y + kSquare.height) / 120.0, 0.05);
  }
}

TEST_F(GstElements, BoxesThroughVideocropAreNeverWrong) {
  // GStreamer 1.22's videocrop does not transform ROI metas (they carry the video-size tag,
  // which its transform_meta hands to GstBaseTransform, which drops them): downstream of a
  // crop, boxes are absent, never misplaced. Should a later GStreamer carry them, they must
  // land where the square is in the cropped frame.
  const cv::Rect moved(kSquare.x - 40, kSquare.y - 20, kSquare.width, kSquare.height);
  int width = 0;
  const auto after = rois_through(
      "autoassigndetect threshold=0.3 model-file=MODEL ! videocrop left=40 top=20", &width);
  EXPECT_EQ(width, 120);
  guint major = 0, minor = 0, micro = 0, nano = 0;
  gst_version(&major, &minor, &micro, &nano);
  if (major == 1 && minor <= 22) {
    EXPECT_TRUE(after.empty()) << "videocrop now carries ROI metas: update the README";
  } else {
    for (const auto& r : after) EXPECT_GT(iou(r, moved), 0.6);
  }
  // The documented recipe: crop first, then detect; boxes are in the cropped frame.
  const auto before = rois_through(
      "videocrop left=40 top=20 ! autoassigndetect threshold=0.3 model-file=MODEL", &width);
  EXPECT_EQ(width, 120);
  ASSERT_FALSE(before.empty());
  EXPECT_GT(iou(before[0], moved), 0.6);
}

TEST_F(GstElements, ElementsShareOneLoadedModelWithTheirOwnThresholds) {
  const size_t before = autoassign_detect_loaded_models();
  GstHarness* strict = detect_harness(testing::trained_square_model(), "threshold", 0.99);
  GstHarness* loose = detect_harness(testing::trained_square_model(), "threshold", 0.0);
  for (GstHarness* h : {strict, loose}) {
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  }
  // Both running, one model between them.
  EXPECT_EQ(autoassign_detect_loaded_models(), before + 1);
  GstBuffer* a = gst_harness_pull(strict);
  GstBuffer* b = gst_harness_pull(loose);
  // Each element's own threshold: the loose one keeps more boxes than the strict one.
  EXPECT_LT(gst::read_rois(a).size(), gst::read_rois(b).size());
  gst_buffer_unref(a);
  gst_buffer_unref(b);
  gst_harness_teardown(strict);
  gst_harness_teardown(loose);
  EXPECT_EQ(autoassign_detect_loaded_models(), before);  // released with the last user
}

// autoassign_detect_keep_models (what autoassign-cameras sets): a model stays loaded with no
// element using it, and the next element to start gets that same copy.
TEST_F(GstElements, KeptModelsOutliveTheirElements) {
  const size_t before = autoassign_detect_loaded_models();
  autoassign_detect_keep_models(TRUE);
  for (int round = 0; round < 2; ++round) {
    GstHarness* h = detect_harness(testing::trained_square_model());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    gst_harness_teardown(h);
    EXPECT_EQ(autoassign_detect_loaded_models(), before + 1) << "round " << round;
  }
  autoassign_detect_keep_models(FALSE);
  EXPECT_EQ(autoassign_detect_loaded_models(), before);
}

// The inference mark carries the model's time on fresh results only (the cameras' latency
// histogram is built from it).
TEST_F(GstElements, FreshMarksCarryTheInferenceTime) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  g_object_set(h->element, "inference-interval", 2u, nullptr);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    double ms = -1;
    const int mark = gst::read_inference_mark(out, &ms);
    EXPECT_EQ(mark, i % 2 == 0 ? 1 : 0) << "frame " << i;
    if (mark == 1) {
      EXPECT_GT(ms, 0.0) << "frame " << i;
      EXPECT_LT(ms, 60000.0) << "frame " << i;
    } else {
      EXPECT_EQ(ms, 0.0) << "frame " << i;
    }
    gst_buffer_unref(out);
  }
  gst_harness_teardown(h);
}

TEST_F(GstElements, DropWhenBusyNeverWaitsForInference) {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", testing::trained_square_model().c_str(), "threshold", 0.3,
               "drop-when-busy", TRUE, nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  // The first frame leaves before any inference has finished: it carries nothing.
  GstBuffer* frame0 = make_frame(picture(), GST_VIDEO_FORMAT_BGR);
  GST_BUFFER_PTS(frame0) = 0;
  ASSERT_EQ(gst_harness_push(h, frame0), GST_FLOW_OK);
  GstBuffer* first = gst_harness_pull(h);
  EXPECT_TRUE(gst::read_rois(first).empty());
  gst_buffer_unref(first);
  // Later frames carry the worker's latest result once it exists, with the timestamp of the
  // frame it was computed on (source-pts): an earlier frame's, never a later one's.
  bool seen = false;
  for (int i = 1; i < 200 && !seen; ++i) {
    g_usleep(20000);
    GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_BGR);
    GST_BUFFER_PTS(in) = static_cast<GstClockTime>(i) * 20 * GST_MSECOND;
    ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    const auto rois = gst::read_rois(out);
    if (!rois.empty()) {
      seen = true;
      EXPECT_GT(iou(rois[0], kSquare), 0.6);
      ASSERT_TRUE(GST_CLOCK_TIME_IS_VALID(rois[0].source_pts));
      EXPECT_LT(rois[0].source_pts, GST_BUFFER_PTS(out));      // the result came after its frame
      EXPECT_EQ(rois[0].source_pts % (20 * GST_MSECOND), 0u);  // one of the frames pushed
    }
    gst_buffer_unref(out);
  }
  EXPECT_TRUE(seen);
  // The element adds no latency in this mode.
  GstQuery* q = gst_query_new_latency();
  gst_harness_set_upstream_latency(h, 10 * GST_MSECOND);
  ASSERT_TRUE(gst_pad_peer_query(h->sinkpad, q));
  GstClockTime min = 0;
  gst_query_parse_latency(q, nullptr, &min, nullptr);
  EXPECT_EQ(min, 10 * GST_MSECOND);
  gst_query_unref(q);
  gst_harness_teardown(h);
}

TEST_F(GstElements, SynchronousModeReportsInferenceLatency) {
  GstHarness* h = detect_harness(testing::trained_square_model());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  gst_harness_set_upstream_latency(h, 10 * GST_MSECOND);
  {
    // A live pipeline asks before the first frame: the answer already includes an inference
    // (measured when the element started).
    GstQuery* q = gst_query_new_latency();
    ASSERT_TRUE(gst_pad_peer_query(h->sinkpad, q));
    GstClockTime min = 0;
    gst_query_parse_latency(q, nullptr, &min, nullptr);
    EXPECT_GT(min, 10 * GST_MSECOND);
    gst_query_unref(q);
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  gst_harness_set_upstream_latency(h, 10 * GST_MSECOND);
  GstQuery* q = gst_query_new_latency();
  ASSERT_TRUE(gst_pad_peer_query(h->sinkpad, q));
  GstClockTime min = 0;
  gst_query_parse_latency(q, nullptr, &min, nullptr);
  gst_query_unref(q);
  gst_harness_teardown(h);
  // Upstream's plus about one inference: the inference timed here, independently, on the same
  // frame with the same model. The fastest of 7, not the median: other load on the machine only
  // adds time, and under a training job at nice 19 the median came out 27 ms against the
  // element's 3.7 (its own figure, taken when it started). A figure of upstream's alone (or
  // 1 ns more) fails.
  Detector det(testing::trained_square_model());
  const cv::Mat frame = picture();
  std::vector<double> ms;
  for (int i = 0; i < 8; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    det.detect(ImageView::packed(PixelFormat::kBGR, frame.data, frame.cols, frame.rows,
                                 static_cast<int>(frame.step)));
    const double t =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) ms.push_back(t);  // the first call allocates
  }
  const double inference_ms = *std::min_element(ms.begin(), ms.end());
  const double reported_ms = static_cast<double>(min - 10 * GST_MSECOND) / GST_MSECOND;
  EXPECT_GE(reported_ms, 0.5 * inference_ms) << "inference " << inference_ms << " ms";
  EXPECT_LE(reported_ms, 5.0 * inference_ms + 20.0) << "inference " << inference_ms << " ms";
}

TEST_F(GstElements, CudaCapsOnlyWhereCudaRuns) {
  // memory:CUDAMemory is offered only by a build with the cuda option, on a LibTorch that sees
  // a CUDA device; everywhere else the element must not advertise it.
  GstElementFactory* f = gst_element_factory_find("autoassigndetect");
  ASSERT_NE(f, nullptr);
  bool offers_cuda = false;
  for (const GList* t = gst_element_factory_get_static_pad_templates(f); t; t = t->next) {
    GstCaps* caps = gst_static_pad_template_get_caps(static_cast<GstStaticPadTemplate*>(t->data));
    for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
      if (gst_caps_features_contains(gst_caps_get_features(caps, i), "memory:CUDAMemory")) {
        offers_cuda = true;
      }
    }
    gst_caps_unref(caps);
  }
  gst_object_unref(f);
#ifdef AUTOASSIGN_WITH_CUDA
  EXPECT_EQ(offers_cuda, cuda_available());
#else
  EXPECT_FALSE(offers_cuda);
#endif
}

// ---- stress -----------------------------------------------------------------------------

// detect_harness in synchronous or drop-when-busy mode (a boolean: not through its double).
GstHarness* detect_harness_mode(bool drop_when_busy) {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "model-file", testing::trained_square_model().c_str(), "threshold", 0.3,
               "threads", 2, "drop-when-busy", drop_when_busy ? TRUE : FALSE, nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  return h;
}

// A frame of `format` at w x h whose rows are padded to `stride_pad` extra bytes per plane row
// (a GstVideoMeta carries the strides, as decoders and cameras produce them).
GstBuffer* padded_frame(GstVideoFormat format, int w, int h, int stride_pad) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, static_cast<guint>(w), static_cast<guint>(h));
  gsize offsets[GST_VIDEO_MAX_PLANES] = {};
  gint strides[GST_VIDEO_MAX_PLANES] = {};
  gsize size = 0;
  for (guint p = 0; p < GST_VIDEO_INFO_N_PLANES(&info); ++p) {
    strides[p] = GST_VIDEO_INFO_PLANE_STRIDE(&info, p) + stride_pad;
    offsets[p] = size;
    const int rows = GST_VIDEO_FORMAT_INFO_SCALE_HEIGHT(info.finfo, p, h);
    size += static_cast<gsize>(strides[p]) * static_cast<gsize>(rows);
  }
  GstBuffer* b = gst_buffer_new_allocate(nullptr, size, nullptr);
  gst_buffer_memset(b, 0, 0x80, size);
  gst_buffer_add_video_meta_full(b, GST_VIDEO_FRAME_FLAG_NONE, format, static_cast<guint>(w),
                                 static_cast<guint>(h), GST_VIDEO_INFO_N_PLANES(&info), offsets,
                                 strides);
  return b;
}

// Caps renegotiation storm: 1x1 to 3840x2160, odd sizes, three formats, padded strides, in
// both modes; every frame is accepted and nothing crashes or leaks a mapping.
TEST_F(GstElements, CapsRenegotiationStorm) {
  const std::vector<std::pair<int, int>> sizes = {{1, 1},   {2, 2},     {3, 5},       {17, 9},
                                                  {64, 48}, {641, 479}, {1921, 1079}, {3840, 2160}};
  for (bool drop : {false, true}) {
    GstHarness* h = detect_harness_mode(drop);
    int pushed = 0;
    for (auto format : {GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420}) {
      for (const auto& [w, hgt] : sizes) {
        gst_harness_set_src_caps_str(h, caps_for(format, w, hgt).c_str());
        for (int pad : {0, 64}) {
          ASSERT_EQ(gst_harness_push(h, padded_frame(format, w, hgt, pad)), GST_FLOW_OK)
              << gst_video_format_to_string(format) << " " << w << "x" << hgt << " pad " << pad
              << (drop ? " drop-when-busy" : "");
          gst_buffer_unref(gst_harness_pull(h));
          ++pushed;
        }
      }
    }
    EXPECT_EQ(pushed, 48);
    gst_harness_teardown(h);
  }
}

// Buffers pushed while another thread changes threshold, inference-interval and model-file
// (a background reload each time), in both modes: every push succeeds, the element keeps
// finding the square, and teardown waits for everything.
TEST_F(GstElements, PropertyChangesWhileBuffersFlow) {
  const std::string dir = testing::temp_dir();
  fs::copy_file(testing::trained_square_model(), dir + "/b.pt");
  for (bool drop : {false, true}) {
    GstHarness* h = detect_harness_mode(drop);
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    std::atomic<bool> done{false};
    int changes = 0;
    std::thread changer([&] {
      for (int i = 0; !done; ++i, ++changes) {
        g_object_set(h->element, "threshold", 0.2 + 0.1 * (i % 3), "inference-interval",
                     static_cast<guint>(1 + i % 4), nullptr);
        if (i % 10 == 0) {
          g_object_set(h->element, "model-file",
                       (i % 20 ? dir + "/b.pt" : testing::trained_square_model()).c_str(), nullptr);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    int found = 0;
    for (int i = 0; i < 300; ++i) {
      GstBuffer* in = make_frame(picture(), GST_VIDEO_FORMAT_BGR);
      GST_BUFFER_PTS(in) = static_cast<GstClockTime>(i) * GST_SECOND / 30;
      ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK) << "frame " << i;
      GstBuffer* out = gst_harness_pull(h);
      for (const auto& r : gst::read_rois(out)) found += iou(r, kSquare) > 0.5;
      gst_buffer_unref(out);
      // drop-when-busy frames return at once: unpaced, the 300 could all pass before the first
      // inference (10-30 ms here, beside a reload) ends, and none would carry boxes (2 runs in
      // 8 failed so, before and after the scheduler moved into the library). A camera's pace,
      // 1 ms a frame, still outruns the model.
      if (drop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    done = true;
    changer.join();
    EXPECT_GE(changes, 5);  // each model-file set waits for the reload before it
    // drop-when-busy attaches what the worker finished, which lags a fast pusher.
    EXPECT_GT(found, drop ? 10 : 30) << (drop ? "drop-when-busy" : "synchronous");
    gst_harness_teardown(h);
  }
}

// The state cycled NULL/READY/PAUSED/PLAYING while a thread pushes: pushes outside PLAYING are
// refused (FLUSHING and the like), never crash; the element works again afterwards.
TEST_F(GstElements, StateCyclesWhileBuffersArePushed) {
  for (bool drop : {false, true}) {
    GstHarness* h = detect_harness_mode(drop);
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    std::atomic<bool> done{false};
    std::atomic<int> ok{0};
    std::thread pusher([&] {
      while (!done) {
        if (gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)) == GST_FLOW_OK) ++ok;
        while (GstBuffer* b = gst_harness_try_pull(h)) gst_buffer_unref(b);
      }
    });
    const GstState cycle[] = {GST_STATE_READY, GST_STATE_NULL, GST_STATE_READY, GST_STATE_PAUSED,
                              GST_STATE_PLAYING};
    for (int i = 0; i < 20; ++i) {
      for (GstState s : cycle) {
        gst_element_set_state(h->element, s);
        gst_element_get_state(h->element, nullptr, nullptr, GST_CLOCK_TIME_NONE);
      }
    }
    done = true;
    pusher.join();
    EXPECT_GT(ok.load(), 0);
    // Back in PLAYING: caps again (a NULL state forgot them), and frames flow.
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    while (GstBuffer* b = gst_harness_try_pull(h)) gst_buffer_unref(b);
    gst_harness_teardown(h);
  }
}

// NaN passes GLib's range check for double properties: the element refuses it and keeps the
// value it had (it used to be replaced silently by the model's default).
TEST(DetectProperties, NaNThresholdsAreRefused) {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "threshold", 0.4, "iou-threshold", 0.5, nullptr);
  g_object_set(e, "threshold", std::nan(""), "iou-threshold", std::nan(""), nullptr);
  double t = 0, iou = 0;
  g_object_get(e, "threshold", &t, "iou-threshold", &iou, nullptr);
  EXPECT_DOUBLE_EQ(t, 0.4);
  EXPECT_DOUBLE_EQ(iou, 0.5);
  gst_object_unref(e);
}

// ---- autoassigntrack on real photos ----------------------------------------------------------

// The WIDER FACE val ground truth of `image` (event/name.jpg) from the official text file.
std::vector<cv::Rect> wider_val_faces(const std::string& data, const std::string& image) {
  std::ifstream in(data + "/widerface/wider_face_split/wider_face_val_bbx_gt.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line != image) continue;
    int n = 0;
    in >> n;
    std::vector<cv::Rect> faces;
    for (int i = 0; i < std::max(n, 1); ++i) {
      int v[10];
      for (int& x : v) in >> x;
      if (n > 0) faces.emplace_back(v[0], v[1], v[2], v[3]);
    }
    return faces;
  }
  return {};
}

// A clip of three shots, one WIDER couple photo each, held for 10 frames (1 s at 10 fps) with a
// slow zoom (the 4:3 view shrinks 1.5% per frame about the centre), through autoassigndetect
// (the shipped model) and autoassigntrack. Each ground-truth face is followed frame by frame
// (the ROI of IoU >= 0.4 with it): a face seen in at least 7 of its 10 frames must keep its id
// the whole shot (no switch, and no fragment: seen, missed, seen again), every ROI must carry an
// id, and a new shot's faces must get ids never used before. A switch is the tracker's: the
// face's id changes to one the previous frame did not have, though the face's boxes in the two
// frames overlap (IoU >= 0.5), so the tracker could have continued the track. When the detector
// boxes a face twice and then drops one box (v9 on _110's second face: tight and loose boxes in
// frame 8, two tracks, only the loose one in frame 9), the face's best box moves to the other,
// existing track: right, and counted apart as a handover. The photos are chosen so no face of a
// shot overlaps one of the shot before (checked below): an IoU tracker cannot tell a cut, and
// need not here.
TEST(Tracking, IdsStayWithinAShotAndAreNewAcrossShots) {
  const char* data = std::getenv("AUTOASSIGN_DATA");
  const char* model = std::getenv("AUTOASSIGN_MODEL");
  if (!data || !model || !fs::exists(model)) GTEST_SKIP() << "AUTOASSIGN_DATA/MODEL not set";
  const std::vector<std::string> shots = {"19--Couple/19_Couple_Couple_19_110.jpg",
                                          "19--Couple/19_Couple_Couple_19_139.jpg",
                                          "19--Couple/19_Couple_Couple_19_832.jpg"};
  const int W = 640, H = 480, frames = 10;
  // Frame f of a shot: the centred 4:3 region, scaled by 1 - 0.015 f, resized to 640x480.
  auto view = [&](const cv::Mat& img, int f) {
    double vw = img.cols, vh = img.cols * 3.0 / 4;
    if (vh > img.rows) {
      vh = img.rows;
      vw = img.rows * 4.0 / 3;
    }
    const double s = 1 - 0.015 * f;
    vw *= s;
    vh *= s;
    return cv::Rect2d((img.cols - vw) / 2, (img.rows - vh) / 2, vw, vh);
  };
  auto to_frame = [&](const cv::Rect& face, const cv::Rect2d& v) {
    const double k = W / v.width;
    return cv::Rect(static_cast<int>((face.x - v.x) * k), static_cast<int>((face.y - v.y) * k),
                    static_cast<int>(face.width * k), static_cast<int>(face.height * k));
  };
  for (int interval : {1, 3}) {
    SCOPED_TRACE("inference-interval " + std::to_string(interval));
    const std::string launch = "autoassigndetect threads=2 model-file=\"" + std::string(model) +
                               "\" inference-interval=" + std::to_string(interval) +
                               " ! autoassigntrack";
    GstHarness* h = gst_harness_new_parse(launch.c_str());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, W, H).c_str());
    std::set<int64_t> earlier_ids;
    std::vector<cv::Rect> previous_faces;
    int followed = 0, switches = 0, handovers = 0, fragments = 0, frame_no = 0;
    for (const auto& shot : shots) {
      const cv::Mat img = cv::imread(std::string(data) + "/widerface/WIDER_val/images/" + shot);
      ASSERT_FALSE(img.empty()) << shot;
      const auto faces = wider_val_faces(data, shot);
      ASSERT_GE(faces.size(), 2u) << shot;
      for (const auto& a : faces) {  // the precondition: no face overlaps one of the last shot
        for (const auto& b : previous_faces) {
          gst::Roi previous;
          previous.x = b.x;
          previous.y = b.y;
          previous.w = b.width;
          previous.h = b.height;
          EXPECT_LT(iou(previous, to_frame(a, view(img, 0))), 0.1) << shot;
        }
      }
      std::vector<std::vector<int64_t>> ids(faces.size());
      std::vector<std::vector<gst::Roi>> boxes(faces.size());  // the ROIs behind ids
      std::vector<std::set<int64_t>> frame_ids(frames);        // every ROI's id, per frame
      std::vector<std::vector<bool>> seen_in(faces.size());    // per frame: an ROI on the face
      std::set<int64_t> shot_ids;
      for (int f = 0; f < frames; ++f) {
        const auto v = view(img, f);
        cv::Mat frame;
        cv::resize(img(cv::Rect(v)), frame, cv::Size(W, H));
        GstBuffer* in = make_frame(frame, GST_VIDEO_FORMAT_BGR);
        GST_BUFFER_PTS(in) = static_cast<GstClockTime>(frame_no++) * GST_SECOND / 10;
        ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
        GstBuffer* out = gst_harness_pull(h);
        const auto rois = gst::read_rois(out);
        for (const auto& r : rois) {
          EXPECT_GE(r.object_id, 0) << "a ROI without an id, frame " << f;
          shot_ids.insert(r.object_id);
          frame_ids[f].insert(r.object_id);
        }
        for (size_t j = 0; j < faces.size(); ++j) {
          const cv::Rect gt = to_frame(faces[j], v);
          double best = 0.4;
          int64_t id = -1;
          gst::Roi matched;
          for (const auto& r : rois) {
            if (iou(r, gt) >= best) {
              best = iou(r, gt);
              id = r.object_id;
              matched = r;
            }
          }
          if (id >= 0) {
            ids[j].push_back(id);
            boxes[j].push_back(matched);
          }
          seen_in[j].push_back(id >= 0);
        }
        gst_buffer_unref(out);
      }
      for (size_t j = 0; j < faces.size(); ++j) {
        std::string seen;
        for (auto id : ids[j]) seen += " " + std::to_string(id);
        SCOPED_TRACE(shot + " face " + std::to_string(j) + " ids:" + seen);
        if (ids[j].size() < 7) continue;
        ++followed;
        // Fragments (CLEAR MOT's "Frag"): the face's track interrupted and resumed.
        for (size_t f = 1; f + 1 < seen_in[j].size(); ++f) {
          if (seen_in[j][f - 1] && !seen_in[j][f]) {
            const auto resumes = std::find(seen_in[j].begin() + f, seen_in[j].end(), true);
            if (resumes != seen_in[j].end()) ++fragments;
          }
        }
        // With no fragment, consecutive entries are consecutive frames: entry k is frame
        // first + k.
        const auto first =
            std::find(seen_in[j].begin(), seen_in[j].end(), true) - seen_in[j].begin();
        for (size_t k = 1; k < ids[j].size(); ++k) {
          if (ids[j][k] == ids[j][k - 1]) continue;
          const auto& b = boxes[j][k - 1];
          const bool existed = frame_ids[first + k - 1].count(ids[j][k]) > 0;
          const bool tracker = !existed && iou(boxes[j][k], cv::Rect(b.x, b.y, b.w, b.h)) >= 0.5;
          (tracker ? switches : handovers) += 1;
          EXPECT_FALSE(tracker) << shot << " face " << j << ": id switch at its entry " << k;
        }
        EXPECT_EQ(earlier_ids.count(ids[j][0]), 0u) << shot << ": an id of an earlier shot";
      }
      earlier_ids.insert(shot_ids.begin(), shot_ids.end());
      previous_faces.clear();
      for (const auto& a : faces) previous_faces.push_back(to_frame(a, view(img, frames - 1)));
    }
    // The shipped model finds 4 of the 6 faces in at least 7 frames (hand-checked: the second
    // face of _139 and the first of _832 are missed or boxed loosely): the check above cannot
    // pass on nothing.
    EXPECT_GE(followed, 4);
    EXPECT_EQ(switches, 0);
    // Hand-checked: one (v9's loose box on _110's second face in its last frame); a tracker
    // that gave every box a new id each frame would make dozens.
    EXPECT_LE(handovers, 2);
    EXPECT_EQ(fragments, 0);  // hand-checked: each followed face is boxed in every frame
    gst_harness_teardown(h);
  }
}

// Flushing (a seek) forgets the tracks: ids start again at 1. Boxes from another producer (no
// detection structure, no inference mark) are tracked too, and autoassignjson writes the id as
// "id" on each object (gvametaconvert's field).
TEST(Tracking, FlushForgetsTracksAndJsonCarriesIds) {
  const std::string json = testing::temp_dir() + "/track.jsonl";
  GstHarness* h =
      gst_harness_new_parse(("autoassigntrack ! autoassignjson location=" + json).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  auto push_box = [&](int x) {
    GstBuffer* b = make_frame(cv::Mat(120, 160, CV_8UC3, cv::Scalar::all(0)), GST_VIDEO_FORMAT_BGR);
    gst_buffer_add_video_region_of_interest_meta(b, "thing", x, 10, 40, 40);
    EXPECT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    const auto rois = gst::read_rois(out);
    gst_buffer_unref(out);
    return rois.size() == 1 ? rois[0].object_id : int64_t{-1};
  };
  EXPECT_EQ(push_box(10), 1);
  EXPECT_EQ(push_box(12), 1);
  EXPECT_EQ(push_box(100), 2);  // far away: a new object
  gst_harness_push_event(h, gst_event_new_flush_start());
  gst_harness_push_event(h, gst_event_new_flush_stop(TRUE));
  EXPECT_EQ(push_box(100), 1);
  gst_harness_teardown(h);
  std::ifstream in(json);
  std::vector<int64_t> written;
  for (std::string line; std::getline(in, line);) {
    const auto frame = nlohmann::json::parse(line);
    for (const auto& o : frame.at("objects")) written.push_back(o.at("id"));
  }
  EXPECT_EQ(written, (std::vector<int64_t>{1, 1, 2, 1}));
}

// Going down to READY and back forgets the tracks too (the state is made at start and dropped
// at stop): the same box gets id 1 again, not its old id 2.
TEST(Tracking, RestartForgetsTracks) {
  GstHarness* h = gst_harness_new("autoassigntrack");
  const std::string caps = caps_for(GST_VIDEO_FORMAT_BGR, 160, 120);
  gst_harness_set_src_caps_str(h, caps.c_str());
  auto push_box = [&](int x) {
    GstBuffer* b = make_frame(cv::Mat(120, 160, CV_8UC3, cv::Scalar::all(0)), GST_VIDEO_FORMAT_BGR);
    gst_buffer_add_video_region_of_interest_meta(b, "thing", x, 10, 40, 40);
    EXPECT_EQ(gst_harness_push(h, b), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    const auto rois = gst::read_rois(out);
    gst_buffer_unref(out);
    return rois.size() == 1 ? rois[0].object_id : int64_t{-1};
  };
  EXPECT_EQ(push_box(10), 1);
  EXPECT_EQ(push_box(100), 2);
  ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  ASSERT_EQ(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
  gst_harness_set_src_caps_str(h, caps.c_str());
  EXPECT_EQ(push_box(100), 1);
  gst_harness_teardown(h);
}

// ---- autoassignpublish against a real mosquitto broker on 127.0.0.1 -------------------------

// 127.0.0.1:port (0: any free port, for bind).
sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A mosquitto broker on a free 127.0.0.1 port, started and killed like a real one.
class Broker {
 public:
  Broker() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    close(fd);
    conf_ = testing::temp_dir() + "/mosquitto.conf";
    std::ofstream(conf_) << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n";
  }
  ~Broker() { kill_now(); }
  static bool available() { return fs::exists("/usr/sbin/mosquitto"); }
  // Starts it and waits until it accepts connections.
  bool start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 100; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      const sockaddr_in a = loopback(port_);
      const bool up = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      if (up) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string conf_;
};

// A subscriber (libmosquitto) that keeps every payload on a topic, re-subscribing after it
// reconnects.
class Subscriber {
 public:
  Subscriber(int port, std::string topic) : topic_(std::move(topic)) {
    mosquitto_lib_init();
    client_ = mosquitto_new(nullptr, true, this);
    mosquitto_connect_callback_set(client_, [](mosquitto* m, void* self, int rc) {
      auto* s = static_cast<Subscriber*>(self);
      if (rc == 0) mosquitto_subscribe(m, nullptr, s->topic_.c_str(), 0);
    });
    mosquitto_subscribe_callback_set(client_, [](mosquitto*, void* self, int, int, const int*) {
      auto* s = static_cast<Subscriber*>(self);
      std::lock_guard<std::mutex> lock(s->lock_);
      ++s->subscriptions_;
    });
    mosquitto_message_callback_set(client_, [](mosquitto*, void* self, const mosquitto_message* m) {
      auto* s = static_cast<Subscriber*>(self);
      std::lock_guard<std::mutex> lock(s->lock_);
      s->messages_.emplace_back(static_cast<const char*>(m->payload), m->payloadlen);
    });
    mosquitto_reconnect_delay_set(client_, 1, 1, false);
    mosquitto_connect_async(client_, "127.0.0.1", port, 30);
    mosquitto_loop_start(client_);
  }
  ~Subscriber() {
    mosquitto_disconnect(client_);
    mosquitto_loop_stop(client_, false);
    mosquitto_destroy(client_);
  }
  // Waits until `pred(messages, subscriptions)` holds or `seconds` pass.
  template <typename Pred>
  bool wait_for(Pred pred, double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      {
        std::lock_guard<std::mutex> lock(lock_);
        if (pred(messages_, subscriptions_)) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(lock_);
    return messages_;
  }

 private:
  std::string topic_;
  mosquitto* client_ = nullptr;
  std::mutex lock_;
  std::vector<std::string> messages_;
  int subscriptions_ = 0;
};

// Frame i carries one ROI at x = i: the documents say which frame they describe.
GstBuffer* numbered_frame(int i) {
  GstBuffer* b = make_frame(cv::Mat(120, 160, CV_8UC3, cv::Scalar::all(0)), GST_VIDEO_FORMAT_BGR);
  gst_buffer_add_video_region_of_interest_meta(b, "face", static_cast<guint>(i), 10, 20, 20);
  GST_BUFFER_PTS(b) = static_cast<GstClockTime>(i) * GST_SECOND / 30;
  return b;
}

std::vector<int> frame_numbers(const std::vector<std::string>& docs) {
  std::vector<int> xs;
  for (const auto& d : docs) {
    const auto j = nlohmann::json::parse(d);
    xs.push_back(j.at("objects").at(0).at("x").get<int>());
  }
  return xs;
}

// Waits up to `seconds` for autoassignpublish's read-only "connected" to turn true.
bool becomes_connected(GstElement* pub, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (gboolean up = FALSE; std::chrono::steady_clock::now() < end;) {
    g_object_get(pub, "connected", &up, nullptr);
    if (up) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// End of stream into `h`; then every frame first..last must reach `sub` within `seconds`.
void expect_frames_delivered(GstHarness* h, Subscriber& sub, int first, int last, double seconds) {
  gst_harness_push_event(h, gst_event_new_eos());
  ASSERT_TRUE(sub.wait_for(
      [last](auto& m, int) {
        return !m.empty() && nlohmann::json::parse(m.back()).at("objects").at(0).at("x") == last;
      },
      seconds));
  const auto got = frame_numbers(sub.messages());
  for (int i = first; i <= last; ++i) {
    EXPECT_NE(std::find(got.begin(), got.end(), i), got.end()) << "frame " << i << " lost";
  }
}

// Plays `launch` until its first error, end of stream or 10 s: the error (the caller frees it),
// or nullptr.
GError* first_error(const std::string& launch) {
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(launch.c_str(), &err);
  if (!p) return err;
  if (err) g_clear_error(&err);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(
      bus, 10 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
  if (m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) gst_message_parse_error(m, &err, nullptr);
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return err;
}

TEST(Publish, OneDocumentPerFrameDeliveredByEos) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/a");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish topic=cams/a source=door address=" + broker.address()).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  gst_harness_push_event(h, gst_event_new_eos());  // drains before passing EOS
  ASSERT_TRUE(sub.wait_for([](auto& m, int) { return m.size() >= 30; }, 5));
  const auto docs = sub.messages();
  std::vector<int> expected(30);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(frame_numbers(docs), expected);
  EXPECT_EQ(nlohmann::json::parse(docs[0]).at("source"), "door");
  gst_harness_teardown(h);
}

// The broker killed mid-stream: pushing never stalls (documents queue, the oldest dropped past
// max-queue, counted), and after the broker comes back publishing resumes by itself.
TEST(Publish, BrokerRestartMidStreamNeverStalls) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/b");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish topic=cams/b max-queue=5 address=" + broker.address()).c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  auto push = [&](int i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // A 30 fps stream: the queue (5 documents) holds up while the broker is up.
  for (int i = 0; i < 10; ++i) {
    push(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  ASSERT_TRUE(sub.wait_for([](auto& m, int) { return m.size() >= 10; }, 5));
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  guint64 published_before = 0;
  g_object_get(pub, "published", &published_before, nullptr);
  broker.kill_now();
  double slowest = 0;
  for (int i = 10; i < 30; ++i) {
    slowest = std::max(slowest, push(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_LT(slowest, 0.2) << "a push waited on the dead broker";
  guint64 dropped = 0, published_after = 0;
  g_object_get(pub, "dropped", &dropped, "published", &published_after, nullptr);
  gst_object_unref(pub);
  // 20 documents into a queue of 5: at least 15 are dropped, except those written to the
  // socket before libmosquitto saw the broker go (QoS 0 cannot know they were lost; they count
  // as published). Every document is accounted for: none vanishes uncounted.
  EXPECT_GE(dropped + (published_after - published_before), 15u);
  EXPECT_GE(dropped, 12u);
  ASSERT_TRUE(broker.start());
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 1; }, 10));  // re-subscribed
  // The element reconnects by itself (libmosquitto's back-off: 1, 4, 9, 10 s); then a 30 fps
  // stream again.
  pub = gst_harness_find_element(h, "autoassignpublish");
  const bool up = becomes_connected(pub, 15);
  gst_object_unref(pub);
  ASSERT_TRUE(up);
  for (int i = 30; i < 40; ++i) {
    push(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  expect_frames_delivered(h, sub, 30, 39, 15);
  gst_harness_teardown(h);
}

// No broker at start: a RESOURCE error naming the broker after connect-timeout, not a hang.
TEST(Publish, UnreachableBrokerIsAClearError) {
  Broker nobody;  // a free port nobody listens on
  const auto t0 = std::chrono::steady_clock::now();
  GError* e = first_error(
      "videotestsrc num-buffers=3 ! autoassignpublish connect-timeout=500 "
      "address=" +
      nobody.address() + " ! fakesink");
  ASSERT_TRUE(e) << "no error";
  EXPECT_TRUE(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
  EXPECT_NE(std::string(e->message).find(nobody.address()), std::string::npos) << e->message;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  g_error_free(e);
}

// connect-timeout=0: the element starts at once with no broker, pushes never wait, and once a
// broker comes up on that port the element connects by itself and what follows is delivered.
TEST(Publish, ConnectTimeoutZeroStartsWithoutABroker) {
  if (!Broker::available()) GTEST_SKIP() << "no /usr/sbin/mosquitto";
  Broker broker;  // not started yet
  const auto t0 = std::chrono::steady_clock::now();
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish connect-timeout=0 topic=cams/z max-queue=3 address=" + broker.address())
          .c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  // Far below the 5 s a connect-timeout would wait (a loaded machine is slow, not 5 s slow).
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.5);
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  guint64 dropped = 0;
  g_object_get(pub, "dropped", &dropped, nullptr);
  EXPECT_EQ(dropped, 7u);  // ten documents into a queue of three, nothing sent
  ASSERT_TRUE(broker.start());
  Subscriber sub(broker.port(), "cams/z");
  ASSERT_TRUE(sub.wait_for([](auto&, int subs) { return subs > 0; }, 5));
  if (!becomes_connected(pub, 20)) {  // the sender's retries: 1, 2, 4 ... s
    gst_object_unref(pub);
    gst_harness_teardown(h);
    FAIL() << "not connected 20 s after the broker came up";
  }
  for (int i = 10; i < 15; ++i) {  // each sent before the next: the queue of three holds up
    guint64 before = 0, now = 0;
    g_object_get(pub, "published", &before, nullptr);
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    for (int k = 0; k < 200 && now <= before; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      g_object_get(pub, "published", &now, nullptr);
    }
  }
  gst_object_unref(pub);
  expect_frames_delivered(h, sub, 10, 14, 10);
  gst_harness_teardown(h);
}

// A 127.0.0.1 port that swallows connection attempts (no refusal, no answer), as a firewalled
// or switched-off host does: a listener whose accept queue (backlog 0) is full, so Linux drops
// further SYNs and the connecting side keeps retransmitting.
class SilentPort {
 public:
  SilentPort() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listener_, 0);
    socklen_t len = sizeof a;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    for (int i = 0; i < 2; ++i) fillers_.push_back(attempt());  // never accepted
  }
  ~SilentPort() {
    for (int fd : fillers_) close(fd);
    close(listener_);
  }
  // True when a new connection attempt is still unanswered after 300 ms.
  bool swallows() {
    const int fd = attempt();
    pollfd p{fd, POLLOUT, 0};
    const bool silent = poll(&p, 1, 300) == 0;
    close(fd);
    return silent;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int attempt() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const sockaddr_in a = loopback(port_);
    connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    return fd;
  }
  int listener_ = -1, port_ = 0;
  std::vector<int> fillers_;
};

// A broker address that never answers: the element (connect-timeout=0) starts at once, gives
// an unanswered attempt up after `keepalive` and tries again, and stopping it never waits on a
// connect (libmosquitto's own loop thread reconnects with a blocking connect(), which held the
// stop for the kernel's ~2 min connect timeout).
TEST(Publish, SilentBrokerAddressNeverHoldsTheStop) {
  SilentPort port;
  ASSERT_TRUE(port.swallows()) << "this kernel answers or refuses past a full accept queue";
  GstHarness* h = gst_harness_new_parse(
      ("autoassignpublish connect-timeout=0 keepalive=5 max-queue=2 address=" + port.address())
          .c_str());
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(gst_harness_push(h, numbered_frame(i)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
  }
  // Past the keepalive: the first attempt was given up (after 5 s), a retry is under way.
  std::this_thread::sleep_for(std::chrono::milliseconds(7500));
  GstElement* pub = gst_harness_find_element(h, "autoassignpublish");
  gboolean up = TRUE;
  guint64 dropped = 0;
  g_object_get(pub, "connected", &up, "dropped", &dropped, nullptr);
  gst_object_unref(pub);
  EXPECT_FALSE(up);
  EXPECT_EQ(dropped, 2u);  // four documents into a queue of two, nothing sent
  const auto t0 = std::chrono::steady_clock::now();
  gst_harness_teardown(h);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.5);
}

// method=file appends one JSON line per frame (a second run adds to the first), the same
// document as to MQTT; a location that cannot be opened is a RESOURCE error naming it.
TEST(Publish, FileMethodAppendsOneLinePerFrame) {
  const std::string path = testing::temp_dir() + "/published.jsonl";
  for (int run = 0; run < 2; ++run) {
    GstHarness* h = gst_harness_new_parse(
        ("autoassignpublish method=file source=door location=" + path).c_str());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    for (int i = 0; i < 4; ++i) {
      ASSERT_EQ(gst_harness_push(h, numbered_frame(10 * run + i)), GST_FLOW_OK);
      gst_buffer_unref(gst_harness_pull(h));
    }
    gst_harness_push_event(h, gst_event_new_eos());
    gst_harness_teardown(h);
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_EQ(frame_numbers(lines), (std::vector<int>{0, 1, 2, 3, 10, 11, 12, 13}));
  ASSERT_FALSE(lines.empty());
  const auto doc = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(doc.at("source"), "door");
  EXPECT_EQ(doc.at("resolution").at("width"), 160);

  const std::string bad = testing::temp_dir() + "/no/such/dir/out.jsonl";
  GError* e = first_error(
      "videotestsrc num-buffers=2 ! autoassignpublish method=file location=" + bad + " ! fakesink");
  ASSERT_TRUE(e) << "no error";
  EXPECT_TRUE(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
  EXPECT_NE(std::string(e->message).find(bad), std::string::npos) << e->message;
  g_error_free(e);
}

}  // namespace
}  // namespace autoassign

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
