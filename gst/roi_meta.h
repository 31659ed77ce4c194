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

#include "autoassign/core/types.h"

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

/// All ROI metas of a buffer, in the order they were added.
std::vector<Roi> read_rois(GstBuffer* buffer);

}  // namespace autoassign::gst
