/* SPDX-License-Identifier: MIT */
#include "element.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace autoassign::gst {

void add_any_video_pads(GstElementClass* element_class) {
  GstCaps* caps = gst_caps_from_string("video/x-raw; video/x-raw(ANY)");
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, caps));
  gst_element_class_add_pad_template(
      element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, caps));
  gst_caps_unref(caps);
}

bool video_size_of(GstCaps* caps, VideoSize* size) {
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) return false;
  size->width = GST_VIDEO_INFO_WIDTH(&info);
  size->height = GST_VIDEO_INFO_HEIGHT(&info);
  return true;
}

FILE* open_output(const std::string& path, bool append, std::string* error) {
  // O_NONBLOCK: open() on a FIFO without a reader would otherwise wait for one; it is cleared
  // again at once, so writes block as on any file.
  const int fd =
      ::open(path.c_str(),
             O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | (append ? O_APPEND : O_TRUNC), 0644);
  if (fd < 0) {
    *error = errno == ENXIO ? "a FIFO that no process is reading" : std::strerror(errno);
    return nullptr;
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  FILE* f = fdopen(fd, append ? "a" : "w");
  if (!f) {
    *error = std::strerror(errno);
    ::close(fd);
  }
  return f;
}

}  // namespace autoassign::gst
