/* SPDX-License-Identifier: MIT */
// autoassign-wider-folder: a WIDER FACE image folder through the element, out as WIDER
// prediction files: DIR/<event>/<image>.jpg -> OUT/<event>/<image>.txt, the official layout that
// `autoassign eval --predictions OUT` and the official tools score.
//
//   autoassign-wider-folder --model model/zoo/face-rt.pt --output preds/
//       --images ../shared/data/widerface/WIDER_val/images
//
// One pipeline, `appsrc ! autoassigndetect ! appsink`, for every image: each image is a frame
// whose caps (size) differ from the last one's, which the element takes without reloading.
// Images are decoded with OpenCV into BGR, exactly as `autoassign detect` decodes them, so both
// see the same pixels and, being the same library, give the same predictions.
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <opencv2/imgcodecs.hpp>

#include "autoassign/data/evaluator.h"
#include "options.h"
#include "plugin.h"
#include "roi_meta.h"

namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: autoassign-wider-folder [--model MODEL] --images DIR --output OUT [options]\n"
    "DIR/<event>/<image>.jpg -> OUT/<event>/<image>.txt (WIDER FACE prediction layout)\n";

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  autoassign_gst_register_static();
  std::string model, images, output, precision = "auto";
  double threshold = 0.02;
  int max_detections = 1000, threads = 0;
  autoassign::pipelines::Options cli(kUsage);
  cli.model(&model);
  cli.value("--images", &images, "DIR", "WIDER_val/images or one event folder of it");
  cli.value("--output", &output, "OUT", "prediction folder");
  cli.value("--threshold", &threshold, "T", "score threshold (default 0.02)", 0, 1);
  cli.value("--max-detections", &max_detections, "N", "per image (default 1000)", 1, 1000000);
  cli.value(autoassign::kThreadsOption, &threads);
  cli.value(autoassign::kPrecisionOption, &precision);
  if (const int status = cli.parse(argc, argv); status >= 0) return status;
  if (images.empty() || output.empty()) {
    return cli.fail("--images and --output are required");
  }
  if (!fs::is_directory(images)) {
    std::fprintf(stderr, "image folder not found: %s\n", images.c_str());
    return 1;
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(images)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no images under %s\n", images.c_str());
    return 1;
  }

  const std::string desc =
      "appsrc name=src format=time ! autoassigndetect name=detect threshold=" +
      std::to_string(threshold) + " max-detections=" + std::to_string(max_detections) +
      " threads=" + std::to_string(threads) +
      " precision=" + autoassign::pipelines::quote(precision) +
      " model-file=" + autoassign::pipelines::quote(model) + " ! appsink name=sink sync=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (err) {
    std::fprintf(stderr, "bad pipeline: %s\n", err->message);
    return 2;
  }
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstBus* bus = gst_element_get_bus(pipeline);
  int status = 0;
  auto bus_error = [&]() -> bool {
    GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    if (!m) return false;
    GError* e = nullptr;
    gst_message_parse_error(m, &e, nullptr);
    std::fprintf(stderr, "error: %s\n", e->message);
    g_error_free(e);
    gst_message_unref(m);
    return true;
  };
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    bus_error();
    status = 1;
  }
  size_t boxes = 0, done = 0;
  for (size_t i = 0; status == 0 && i < files.size(); ++i) {
    const auto& path = files[i];
    cv::Mat img = cv::imread(path.string(), cv::IMREAD_COLOR);
    if (img.empty()) {
      std::fprintf(stderr, "%s: not a readable image, skipped\n", path.c_str());
      continue;
    }
    GstVideoInfo info;
    gst_video_info_set_format(&info, GST_VIDEO_FORMAT_BGR, static_cast<guint>(img.cols),
                              static_cast<guint>(img.rows));
    GstCaps* caps = gst_video_info_to_caps(&info);
    gst_app_src_set_caps(GST_APP_SRC(src), caps);
    gst_caps_unref(caps);
    GstBuffer* buf = gst_buffer_new_allocate(nullptr, info.size, nullptr);
    GstVideoFrame frame;
    gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE);
    for (int y = 0; y < img.rows; ++y) {
      std::copy_n(img.ptr<uint8_t>(y), img.cols * 3,
                  static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0)) +
                      y * GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0));
    }
    gst_video_frame_unmap(&frame);
    GST_BUFFER_PTS(buf) = i * GST_SECOND / 30;
    if (gst_app_src_push_buffer(GST_APP_SRC(src), buf) != GST_FLOW_OK) {
      bus_error();
      status = 1;
      break;
    }
    GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 60 * GST_SECOND);
    if (!sample) {
      if (!bus_error()) std::fprintf(stderr, "%s: no frame came back\n", path.c_str());
      status = 1;
      break;
    }
    // The normalised boxes of the "detection" structure keep sub-pixel precision (the meta's
    // own x/y/w/h are whole pixels).
    std::vector<std::array<double, 5>> wider;
    for (const auto& r : autoassign::gst::read_rois(gst_sample_get_buffer(sample))) {
      const double x1 = r.x_min * img.cols, y1 = r.y_min * img.rows;
      wider.push_back({x1, y1, r.x_max * img.cols - x1, r.y_max * img.rows - y1, r.confidence});
    }
    gst_sample_unref(sample);
    boxes += wider.size();
    const std::string event = fs::absolute(path).parent_path().filename().string();
    const std::string name = path.stem().string();
    autoassign::write_wider_prediction((fs::path(output) / event / (name + ".txt")).string(), name,
                                       wider);
    ++done;
  }
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  std::fprintf(stderr, "%zu images, %zu boxes -> %s\n", done, boxes, output.c_str());
  return status;
}
