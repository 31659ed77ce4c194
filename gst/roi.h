/* SPDX-License-Identifier: MIT */
// Detections <-> GstVideoRegionOfInterestMeta in DL Streamer's convention: roi_type = label,
// plus a "detection" parameter structure with normalised x_min, y_min, x_max, y_max (doubles),
// confidence (double), label_id (int) and label (string). Our own producer adds a second
// structure, "autoassign", with source-pts (guint64): the PTS of the frame the detection was
// computed on, which differs from the buffer's own PTS for repeated metadata
// (inference-interval + repeat-metadata, drop-when-busy); consumers that do not know it ignore it.
#pragma once

#include <string>
#include <vector>

#include <gst/video/video.h>
#include <nlohmann/json.hpp>

#include "autoassign/types.h"

namespace autoassign::gst {

/// read_rois clamps other producers' coordinates to this (x + w never overflows an int).
constexpr guint kMaxRoiCoordinate = 1u << 20;

/// A region read back from any producer's ROI meta (our own or another element's).
struct Roi {
  int x = 0, y = 0, w = 0, h = 0;  ///< frame pixels (the meta's fields, clamped to 2^20)
  std::string roi_type;            ///< valid UTF-8 (invalid bytes replaced by U+FFFD)
  bool has_detection = false;      ///< a "detection" param structure was present
  double x_min = 0, y_min = 0, x_max = 0, y_max = 0, confidence = 0;
  int label_id = -1;
  std::string label;
  GstClockTime source_pts = GST_CLOCK_TIME_NONE;  ///< "autoassign" source-pts, when present
  int64_t object_id = -1;  ///< a tracker's "object_id" param structure's "id", when present
};

/// Adds one ROI meta per detection; boxes are rounded out to whole pixels and clipped. With
/// `ids` (one per detection), each also gets an "object_id" param structure with an int "id",
/// as DL Streamer's gvatrack stores it.
void attach_detections(GstBuffer* buffer, const std::vector<Detection>& detections, int width,
                       int height, GstClockTime source_pts = GST_CLOCK_TIME_NONE,
                       const std::vector<int64_t>* ids = nullptr);
/// Removes every ROI meta from a (writable) buffer.
void remove_rois(GstBuffer* buffer);

/// autoassigndetect marks every buffer it passes with a custom meta ("AutoAssignInferenceMeta",
/// a structure with boolean "fresh"): fresh = the buffer's ROI metas are a detection result no
/// earlier buffer carried (the model ran on this frame, or with drop-when-busy a new result
/// arrived); not fresh = repeated or no detections this frame. A tracker predicts on those.
/// A fresh mark also carries "inference-ms" (double): how long the model took on that result.
void mark_inference(GstBuffer* buffer, bool fresh, double inference_ms = 0);
/// 1 fresh, 0 not fresh, -1 no mark (another detector: every frame counts as fresh).
/// `inference_ms` (if given) receives the fresh result's model time, 0 when not known.
int read_inference_mark(GstBuffer* buffer, double* inference_ms = nullptr);
/// All ROI metas of a buffer, in the order they were added.
std::vector<Roi> read_rois(GstBuffer* buffer);

/// One ROI as autoassignjson writes it (gvametaconvert's shape): x, y, w, h, roi_type and, when
/// present, "detection" {bounding_box, confidence, label, label_id}.
nlohmann::json roi_to_json(const Roi& roi);
/// One frame as autoassignjson and autoassignpublish write it: timestamp (the buffer's PTS in
/// ns, -1 if none), resolution, source (when not empty) and its ROIs as "objects".
nlohmann::json frame_to_json(GstBuffer* buffer, const std::vector<Roi>& rois, int width, int height,
                             const std::string& source);
/// JSON text that never throws: invalid UTF-8 (already cleaned by read_rois) is replaced.
std::string json_text(const nlohmann::json& j);

/// The always sink and src pads of the metadata elements (json, track, publish): any raw video,
/// in any memory, since they touch metadata only.
void add_any_video_pads(GstElementClass* element_class);

/// GstVideoFormat -> the library's PixelFormat; false for formats the library does not take.
bool to_pixel_format(GstVideoFormat format, PixelFormat* out);
/// A mapped frame as an ImageView (no copy).
ImageView frame_view(const GstVideoFrame* frame);

}  // namespace autoassign::gst
