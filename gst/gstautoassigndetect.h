/* SPDX-License-Identifier: MIT */
// autoassigndetect: runs the AutoAssign Detector on video frames and attaches one
// GstVideoRegionOfInterestMeta per detection. Never writes pixels.
#pragma once

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_DETECT (gst_auto_assign_detect_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignDetect, gst_auto_assign_detect, GST, AUTO_ASSIGN_DETECT,
                     GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE(autoassigndetect);

G_END_DECLS
