/* SPDX-License-Identifier: MIT */
// autoassignpublish: pass-through; publishes the JSON document autoassignjson writes for each
// frame to an MQTT broker (libmosquitto) or a file, never blocking the stream.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_AUTO_ASSIGN_PUBLISH (gst_auto_assign_publish_get_type())
G_DECLARE_FINAL_TYPE(GstAutoAssignPublish, gst_auto_assign_publish, GST, AUTO_ASSIGN_PUBLISH,
                     GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE(autoassignpublish);

G_END_DECLS
