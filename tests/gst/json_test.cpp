// SPDX-License-Identifier: MIT
// autoassignjson: lines that match the metas; boxes through videoscale and videocrop.
#include "harness.h"

namespace autoassign {
namespace {

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

// location= a FIFO (issue 26: the state change blocked until some process opened it for
// reading): with no reader, a clear error at once; with one, the lines go to it.
TEST_F(GstElements, JsonToAFifoNeverBlocks) {
  const std::string fifo = testing::temp_dir() + "/lines";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  GstElement* e = gst_element_factory_make("autoassignjson", nullptr);
  g_object_set(e, "location", fifo.c_str(), nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gst_element_set_state(e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(m, nullptr);
  GError* err = nullptr;
  gst_message_parse_error(m, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("a FIFO that no process is reading"), std::string::npos)
      << err->message;
  g_error_free(err);
  gst_message_unref(m);
  gst_element_set_state(e, GST_STATE_NULL);
  gst_element_set_bus(e, nullptr);
  gst_object_unref(bus);
  gst_object_unref(e);
  // A reader first: the element opens it and writes a line per frame.
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  GstElement* j = gst_element_factory_make("autoassignjson", nullptr);
  g_object_set(j, "location", fifo.c_str(), nullptr);
  GstHarness* h = gst_harness_new_with_element(j, "sink", "src");
  gst_object_unref(j);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 64, 48).c_str());
  ASSERT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, 64 * 48 * 3, nullptr)),
            GST_FLOW_OK);
  gst_buffer_unref(gst_harness_pull(h));
  char buf[4096];
  const ssize_t n = read(reader, buf, sizeof buf);
  ASSERT_GT(n, 0);
  const auto line = nlohmann::json::parse(std::string(buf, static_cast<size_t>(n)));
  EXPECT_EQ(line["resolution"]["width"], 64);
  gst_harness_teardown(h);
  close(reader);
}

}  // namespace
}  // namespace autoassign
