/* SPDX-License-Identifier: MIT */
// What every element of the plugin does the same way, written once: the pads of the metadata
// elements, the exception guard around the streaming thread's work, the video info of new caps,
// and opening an output file that may be a FIFO.
#pragma once

#include <cstdio>
#include <exception>
#include <mutex>
#include <string>

#include <gst/gst.h>
#include <gst/video/video.h>

namespace autoassign::gst {

/// The always sink and src pads of the metadata elements (json, track, publish): any raw video,
/// in any memory, since they touch metadata only.
void add_any_video_pads(GstElementClass* element_class);

/// Runs `body` (an element's work on the streaming thread, returning a GstFlowReturn) so that
/// no exception reaches GStreamer's C code: whatever it throws becomes an element error
/// "<what> failed: <message>" and GST_FLOW_ERROR.
template <typename Body>
GstFlowReturn guarded(GstElement* element, const char* what, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(element, STREAM, FAILED, ("%s failed: %s", what, e.what()), (nullptr));
  } catch (...) {
    GST_ELEMENT_ERROR(element, STREAM, FAILED, ("%s failed: unknown exception", what), (nullptr));
  }
  return GST_FLOW_ERROR;
}

/// The frame size the metadata elements need from their caps, replaced whole on new caps.
struct VideoSize {
  int width = 0, height = 0;  ///< 0 until caps arrive
};
/// The size of raw-video `caps`; false (and `size` unchanged) for caps that are not.
bool video_size_of(GstCaps* caps, VideoSize* size);

/// Opens `path` for writing ("a" or "w"). A FIFO is opened without waiting for a reader: with
/// none, this fails at once (ENXIO) instead of blocking the state change forever; with one,
/// writes go to it. Returns null with `error` set on failure.
FILE* open_output(const std::string& path, bool append, std::string* error);

}  // namespace autoassign::gst
