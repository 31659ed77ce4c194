// SPDX-License-Identifier: MIT
// autoassigndetect: formats, pass-through, labels, models, intervals, reloads, sharing,
// drop-when-busy, latency, CUDA caps, renegotiation and property/state storms.
#include "harness.h"

namespace autoassign {
namespace {

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

// Paths that are not regular files (issue 26): labels-file=/dev/zero grew to 17 GB, a directory
// was "larger than 16 MB", a FIFO as model-file or labels-file blocked the state change, and a
// switch to a FIFO while playing made the later stop never return. Each is now an error naming
// what the path is, at once.
TEST_F(GstElements, FifosDevicesAndDirectoriesAreRefusedAtOnce) {
  const std::string dir = testing::temp_dir();
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const auto t0 = std::chrono::steady_clock::now();
  expect_start_error(fifo, "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ,
                     "is a FIFO (named pipe), not a regular file");
  expect_start_error("/dev/zero", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ,
                     "is a character device");
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "labels file '/dev/zero': is a character device",
                     "/dev/zero");
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "is a FIFO", fifo);
  expect_start_error(testing::trained_square_model(), "cpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "is a directory", dir);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  // A switch to the FIFO while playing: an error on the bus, the running model keeps serving,
  // and the stop returns.
  GstHarness* h = detect_harness(testing::trained_square_model());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  gst_buffer_unref(gst_harness_pull(h));
  g_object_set(h->element, "model-file", fifo.c_str(), nullptr);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND, GST_MESSAGE_ERROR);
  ASSERT_NE(m, nullptr) << "no error for a switch to a FIFO";
  GError* err = nullptr;
  gst_message_parse_error(m, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("is a FIFO"), std::string::npos) << err->message;
  g_error_free(err);
  gst_message_unref(m);
  ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  EXPECT_FALSE(gst::read_rois(out).empty());  // the old model still runs
  gst_buffer_unref(out);
  const auto t1 = std::chrono::steady_clock::now();
  gst_harness_teardown(h);
  gst_object_unref(bus);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(10));
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
  // No model-file: the default model, here pointed at a file that is not there.
  const std::string missing = dir + "/no-default.pt";
  setenv("AUTOASSIGN_MODEL_FILE", missing.c_str(), 1);
  expect_start_error("", "cpu", GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
                     "no model-file set, and the default model " + missing);
  unsetenv("AUTOASSIGN_MODEL_FILE");
  if (!torch::cuda::is_available()) {
    expect_start_error(testing::trained_square_model(), "cuda", GST_LIBRARY_ERROR,
                       GST_LIBRARY_ERROR_INIT, "CUDA");
  }
  expect_start_error(testing::trained_square_model(), "tpu", GST_RESOURCE_ERROR,
                     GST_RESOURCE_ERROR_SETTINGS, "invalid device 'tpu'");
}

// With no model-file the element runs the shipped face model: from a build, the source tree's
// (meson test passes its path as AUTOASSIGN_MODEL), and gst-inspect says so.
TEST_F(GstElements, DefaultModelIsTheShippedFaceModel) {
  const char* shipped = std::getenv("AUTOASSIGN_MODEL");
  ASSERT_NE(shipped, nullptr) << "AUTOASSIGN_MODEL is not set (meson test sets it)";
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  gchar* file = nullptr;
  g_object_get(e, "model-file", &file, nullptr);
  EXPECT_STREQ(file, shipped);
  g_free(file);
  GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), "model-file");
  EXPECT_STREQ(g_value_get_string(g_param_spec_get_default_value(spec)), shipped);
  EXPECT_NE(std::string(g_param_spec_get_blurb(spec)).find(std::string(shipped) + " (source tree"),
            std::string::npos)
      << g_param_spec_get_blurb(spec);
  // Set to another file and back with NULL: the default again.
  g_object_set(e, "model-file", "/elsewhere.pt", nullptr);
  g_object_set(e, "model-file", nullptr, nullptr);
  g_object_get(e, "model-file", &file, nullptr);
  EXPECT_STREQ(file, shipped);
  g_free(file);
  gst_object_unref(e);
  // And it detects faces with nothing set: a real WIDER image through the element.
  GstHarness* h = gst_harness_new("autoassigndetect");
  const cv::Mat img = cv::imread(testing::shared_data_dir() +
                                 "/widerface/WIDER_val/images/0--Parade/0_Parade_Parade_0_102.jpg");
  ASSERT_FALSE(img.empty());
  cv::Mat bgr;
  cv::resize(img, bgr, cv::Size(640, 426));
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, bgr.cols, bgr.rows).c_str());
  GstBuffer* out = gst_harness_push_and_pull(h, make_frame(bgr, GST_VIDEO_FORMAT_BGR));
  ASSERT_NE(out, nullptr);
  EXPECT_GT(gst::read_rois(out).size(), 5u) << "a crowd of faces, and the default model found few";
  gst_buffer_unref(out);
  gst_harness_teardown(h);
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

// The process-wide model pool through the properties of a fresh element (no model loaded by
// it: it never starts).
guint loaded_models() {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  guint n = 0;
  g_object_get(e, "loaded-models", &n, nullptr);
  gst_object_unref(e);
  return n;
}

void set_keep_models(bool keep) {
  GstElement* e = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_set(e, "keep-models", keep ? TRUE : FALSE, nullptr);
  gboolean back = !keep;
  GstElement* other = gst_element_factory_make("autoassigndetect", nullptr);
  g_object_get(other, "keep-models", &back, nullptr);
  EXPECT_EQ(back, keep ? TRUE : FALSE);
  gst_object_unref(other);
  gst_object_unref(e);
}

TEST_F(GstElements, ElementsShareOneLoadedModelWithTheirOwnThresholds) {
  const guint before = loaded_models();
  GstHarness* strict = detect_harness(testing::trained_square_model(), "threshold", 0.99);
  GstHarness* loose = detect_harness(testing::trained_square_model(), "threshold", 0.0);
  for (GstHarness* h : {strict, loose}) {
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
  }
  // Both running, one model between them.
  EXPECT_EQ(loaded_models(), before + 1);
  GstBuffer* a = gst_harness_pull(strict);
  GstBuffer* b = gst_harness_pull(loose);
  // Each element's own threshold: the loose one keeps more boxes than the strict one.
  EXPECT_LT(gst::read_rois(a).size(), gst::read_rois(b).size());
  gst_buffer_unref(a);
  gst_buffer_unref(b);
  gst_harness_teardown(strict);
  gst_harness_teardown(loose);
  EXPECT_EQ(loaded_models(), before);  // released with the last user
}

// keep-models (what autoassign-cameras sets): a model stays loaded with no element using it,
// and the next element to start gets that same copy. The property is process-wide: set on one
// element, read on another.
TEST_F(GstElements, KeptModelsOutliveTheirElements) {
  const guint before = loaded_models();
  set_keep_models(true);
  for (int round = 0; round < 2; ++round) {
    GstHarness* h = detect_harness(testing::trained_square_model());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
    ASSERT_EQ(gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    gst_harness_teardown(h);
    EXPECT_EQ(loaded_models(), before + 1) << "round " << round;
  }
  set_keep_models(false);
  EXPECT_EQ(loaded_models(), before);
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
  // The figure is a moving average (0.9 old + 0.1 new) that starts at the warm-up inference,
  // first-call allocations and all (30 ms for a 2 ms model on a busy machine): 20 frames
  // leave 12% of that, 3 left 73% and failed the bound below once in CI.
  for (int i = 0; i < 20; ++i) {
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

// After a storm: BGR caps again, and the element finds the square within 20 frames (with
// drop-when-busy the boxes come a frame or more after their frame).
void expect_square_found_again(GstHarness* h, bool drop) {
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_BGR, 160, 120).c_str());
  const cv::Mat picture = testing::square_picture(160, 120, kSquare, 99);
  bool found = false;
  for (int i = 0; i < 20 && !found; ++i) {
    ASSERT_EQ(gst_harness_push(h, make_frame(picture, GST_VIDEO_FORMAT_BGR)), GST_FLOW_OK);
    GstBuffer* out = gst_harness_pull(h);
    for (const auto& r : gst::read_rois(out)) found |= iou(r, kSquare) > 0.5;
    gst_buffer_unref(out);
    if (drop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(found) << (drop ? "drop-when-busy" : "synchronous");
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
    EXPECT_EQ(pushed, 48);  // (the ASSERT above stops at the first refusal)
    // After the storm the element still finds the square: no state of an earlier size or
    // format is left behind.
    expect_square_found_again(h, drop);
    gst_harness_teardown(h);
  }
}

// The peak resident memory (VmHWM) since the last reset_peak_memory(), in bytes.
size_t peak_memory() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}
void reset_peak_memory() { std::ofstream("/proc/self/clear_refs") << "5"; }

// The whole chain (detect ! track ! overlay ! json) on the smallest and the largest frames
// GStreamer's NV12 and I420 caps allow here: 1x1, odd sizes, and 16384x16384 (384 MiB a frame),
// each carrying boxes that cover the frame, cross its edges, or have no area. Every frame passes
// and is written (its own size in the JSON), and a huge frame costs a bounded multiple of
// itself, not a full-size copy per element.
TEST_F(GstElements, WholeChainTakesTinyOddAndHugeFrames) {
  const std::string json = testing::temp_dir() + "/sizes.jsonl";
  GstHarness* h = gst_harness_new_parse(
      ("autoassigndetect threshold=0.3 threads=2 model-file=" + testing::trained_square_model() +
       " ! autoassigntrack ! autoassignoverlay ! autoassignjson location=" + json)
          .c_str());
  const std::vector<std::pair<int, int>> sizes = {{1, 1}, {3, 5}, {17, 9}, {16384, 16384}, {2, 2}};
  std::vector<std::pair<int, int>> pushed;
  size_t huge_peak = 0, huge_frame = 0;
  for (auto format : {GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420}) {
    for (const auto& [w, hgt] : sizes) {
      SCOPED_TRACE(std::string(gst_video_format_to_string(format)) + " " + std::to_string(w) + "x" +
                   std::to_string(hgt));
      gst_harness_set_src_caps_str(h, caps_for(format, w, hgt).c_str());
      GstBuffer* in = padded_frame(format, w, hgt, 0);
      const guint W = static_cast<guint>(w), H = static_cast<guint>(hgt);
      gst_buffer_add_video_region_of_interest_meta(in, "face", 0, 0, W, H);
      gst_buffer_add_video_region_of_interest_meta(in, "face", W - 1, H - 1, W + 10, H + 10);
      gst_buffer_add_video_region_of_interest_meta(in, "face", W / 2, H / 2, 0, 0);
      const size_t frame_bytes = gst_buffer_get_size(in);
      reset_peak_memory();
      const size_t before = peak_memory();
      ASSERT_EQ(gst_harness_push(h, in), GST_FLOW_OK);
      gst_buffer_unref(gst_harness_pull(h));
      if (w == 16384) {
        const size_t after = peak_memory();
        huge_peak = std::max(huge_peak, after > before ? after - before : 0);
        huge_frame = frame_bytes;
      }
      pushed.emplace_back(w, hgt);
    }
  }
  gst_harness_teardown(h);
  std::ifstream lines(json);
  std::string line;
  size_t n = 0;
  for (; std::getline(lines, line); ++n) {
    ASSERT_LT(n, pushed.size());
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("resolution").at("width"), pushed[n].first) << line.substr(0, 200);
    EXPECT_EQ(j.at("resolution").at("height"), pushed[n].second) << line.substr(0, 200);
  }
  EXPECT_EQ(n, pushed.size());
  // The input frame is already resident before the push; the chain may add the network's input
  // and a downscaled copy, never another full-size frame per element.
  EXPECT_LT(huge_peak, huge_frame) << "peak +" << huge_peak / (1 << 20) << " MiB for a "
                                   << huge_frame / (1 << 20) << " MiB frame";
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
    std::atomic<int> changes{0};
    std::atomic<double> last_threshold{0};
    std::thread changer([&] {
      for (int i = 0; !done; ++i, ++changes) {
        last_threshold = 0.2 + 0.1 * (i % 3);
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
    const int changes_before = changes;
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
    // The changes the frames met: at least a few, or the test tested nothing concurrent (each
    // model-file set waits for the reload before it, so they are not many).
    const int changes_during = changes - changes_before;
    done = true;
    changer.join();
    EXPECT_GE(changes_during, 5);
    // The last value set is the one the element holds: no set was lost to a race.
    double threshold = 0;
    g_object_get(h->element, "threshold", &threshold, nullptr);
    EXPECT_DOUBLE_EQ(threshold, last_threshold.load());
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
    std::atomic<int> ok{0}, refused{0};
    std::thread pusher([&] {
      while (!done) {
        if (gst_harness_push(h, make_frame(picture(), GST_VIDEO_FORMAT_BGR)) == GST_FLOW_OK) {
          ++ok;
        } else {
          ++refused;
        }
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
    // Pushes met both sides of the cycle: accepted in PLAYING, refused outside it.
    EXPECT_GT(ok.load(), 0);
    EXPECT_GT(refused.load(), 0);
    // Back in PLAYING: caps again (a NULL state forgot them), and the square is found again.
    while (GstBuffer* b = gst_harness_try_pull(h)) gst_buffer_unref(b);
    expect_square_found_again(h, drop);
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

}  // namespace
}  // namespace autoassign
