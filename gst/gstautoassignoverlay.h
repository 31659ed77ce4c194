/* SPDX-License-Identifier: MIT */
// autoassignoverlay: draws every GstVideoRegionOfInterestMeta (any producer's) on the frame.
#pragma once

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_OVERLAY (gst_auto_assign_overlay_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignOverlay, gst_auto_assign_overlay, GST, AUTO_ASSIGN_OVERLAY,
                     GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE(autoassignoverlay);

G_END_DECLS
