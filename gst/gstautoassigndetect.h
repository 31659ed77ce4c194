/* SPDX-License-Identifier: MIT */
// autoassigndetect: runs the AutoAssign Detector on video frames and attaches one
// GstVideoRegionOfInterestMeta per detection. Never writes pixels.
#pragma once

#include <cstddef>

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_DETECT (gst_auto_assign_detect_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignDetect, gst_auto_assign_detect, GST, AUTO_ASSIGN_DETECT,
                     GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE(autoassigndetect);

G_END_DECLS

/// Loaded models currently shared by the process's autoassigndetect elements: elements with
/// the same model-file, device, threads and labels-file hold one Detector between them.
size_t autoassign_detect_loaded_models();
/// From now on (keep = TRUE) every model an element loads stays loaded until the process ends
/// or keep = FALSE, even while no element uses it: a service that adds, removes and reconnects
/// pipelines then reads each model file once, and its memory does not grow and shrink with
/// every restart. Models already loaded are kept too.
void autoassign_detect_keep_models(gboolean keep);
