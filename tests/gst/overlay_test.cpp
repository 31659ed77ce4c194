// SPDX-License-Identifier: MIT
// autoassignoverlay: draws on the boxes only, one colour per label.
#include "harness.h"

namespace autoassign {
namespace {

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

}  // namespace
}  // namespace autoassign
