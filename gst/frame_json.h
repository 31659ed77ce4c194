/* SPDX-License-Identifier: MIT */
// A frame's ROIs as JSON, in DL Streamer's gvametaconvert shape: what autoassignjson writes and
// autoassignpublish sends.
#pragma once

#include <string>
#include <vector>

#include <gst/gst.h>
#include <nlohmann/json.hpp>

#include "roi_meta.h"

namespace autoassign::gst {

/// One ROI as autoassignjson writes it (gvametaconvert's shape): x, y, w, h, roi_type and, when
/// present, "detection" {bounding_box, confidence, label, label_id}.
nlohmann::json roi_to_json(const Roi& roi);
/// One frame as autoassignjson and autoassignpublish write it: timestamp (the buffer's PTS in
/// ns, -1 if none), resolution, source (when not empty) and its ROIs as "objects".
nlohmann::json frame_to_json(GstBuffer* buffer, const std::vector<Roi>& rois, int width, int height,
                             const std::string& source);
/// JSON text that never throws: invalid UTF-8 (already cleaned by read_rois) is replaced.
std::string json_text(const nlohmann::json& j);

}  // namespace autoassign::gst
