/* SPDX-License-Identifier: MIT */
// The inference mark autoassigndetect puts on every buffer it passes: whether its ROI metas
// are a fresh detection result, and how long the model took on it. Trackers predict between
// fresh results.
#pragma once

#include <gst/gst.h>

namespace autoassign::gst {

/// autoassigndetect marks every buffer it passes with a custom meta ("AutoAssignInferenceMeta",
/// a structure with boolean "fresh"): fresh = the buffer's ROI metas are a detection result no
/// earlier buffer carried (the model ran on this frame, or with drop-when-busy a new result
/// arrived); not fresh = repeated or no detections this frame. A tracker predicts on those.
/// A fresh mark also carries "inference-ms" (double): how long the model took on that result.
void mark_inference(GstBuffer* buffer, bool fresh, double inference_ms = 0);
/// 1 fresh, 0 not fresh, -1 no mark (another detector: every frame counts as fresh).
/// `inference_ms` (if given) receives the fresh result's model time, 0 when not known.
int read_inference_mark(GstBuffer* buffer, double* inference_ms = nullptr);

}  // namespace autoassign::gst
