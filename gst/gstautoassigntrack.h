/* SPDX-License-Identifier: MIT */
// autoassigntrack: gives every ROI meta a stable object id (ByteTrack association over a Kalman
// filter per object, autoassign::Tracker), stored as DL Streamer gvatrack stores it.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_TRACK (gst_auto_assign_track_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignTrack, gst_auto_assign_track, GST, AUTO_ASSIGN_TRACK,
                     GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE(autoassigntrack);

G_END_DECLS
