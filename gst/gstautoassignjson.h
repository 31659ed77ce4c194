/* SPDX-License-Identifier: MIT */
// autoassignjson: pass-through; writes one JSON object per frame with its ROI metas, in DL
// Streamer gvametaconvert's shape, to a file or stdout, and optionally as bus messages.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_JSON (gst_auto_assign_json_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignJson, gst_auto_assign_json, GST, AUTO_ASSIGN_JSON,
                     GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE(autoassignjson);

G_END_DECLS
