/* SPDX-License-Identifier: MIT */
// Registers the plugin's elements; nothing else lives here.
#include "plugin.h"

#include <gst/gst.h>

#include "gstautoassigndetect.h"
#include "gstautoassignjson.h"
#include "gstautoassignoverlay.h"
#include "gstautoassignpublish.h"
#include "gstautoassigntrack.h"

static gboolean plugin_init(GstPlugin* plugin) {
  // All or nothing: a plugin missing one of its elements would fail later and less clearly.
  gboolean ok = GST_ELEMENT_REGISTER(autoassigndetect, plugin);
  ok = ok && GST_ELEMENT_REGISTER(autoassignoverlay, plugin);
  ok = ok && GST_ELEMENT_REGISTER(autoassignjson, plugin);
  ok = ok && GST_ELEMENT_REGISTER(autoassigntrack, plugin);
  ok = ok && GST_ELEMENT_REGISTER(autoassignpublish, plugin);
  return ok;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, autoassign,
                  "AutoAssign object detection (LibTorch): detect, track, overlay, JSON, publish",
                  plugin_init, AUTOASSIGN_VERSION, "MIT", "autoassign-gst",
                  "https://github.com/autoassign-gst")

gboolean autoassign_gst_register_static(void) {
  return gst_plugin_register_static(GST_VERSION_MAJOR, GST_VERSION_MINOR, "autoassign",
                                    "AutoAssign object detection (LibTorch)", plugin_init,
                                    AUTOASSIGN_VERSION, "MIT", "autoassign-gst", "autoassign-gst",
                                    "https://github.com/autoassign-gst");
}
