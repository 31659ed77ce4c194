// SPDX-License-Identifier: MIT
// autoassigntrack on real WIDER FACE photos: ids within a shot, new ids across shots, flush and
// restart.
#include "harness.h"

namespace autoassign {
namespace {

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
  const std::string data = testing::shared_data_dir();
  ASSERT_FALSE(data.empty());
  const char* model = std::getenv("AUTOASSIGN_MODEL");
  ASSERT_TRUE(model && fs::exists(model)) << "AUTOASSIGN_MODEL (the shipped face model) not set";
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

}  // namespace
}  // namespace autoassign
