/* SPDX-License-Identifier: MIT */
// Video frames as the library sees them: GStreamer's formats as PixelFormats, a mapped frame
// as an ImageView (no copy), and a frame mapped for as long as an object lives, system memory
// or (built with the cuda option) CUDA memory, whose view then lies on cuda:N.
#pragma once

#include <gst/video/video.h>

#include "autoassign/core/types.h"

namespace autoassign::gst {

/// GstVideoFormat -> the library's PixelFormat; false for formats the library does not take.
bool to_pixel_format(GstVideoFormat format, PixelFormat* out);
/// A mapped frame as an ImageView (no copy).
ImageView frame_view(const GstVideoFrame* frame);

/// True if the buffer's memory is GstCudaMemory (always false without the cuda option).
bool is_cuda_buffer(GstBuffer* buffer);

// A frame mapped for reading for as long as the object lives: system memory through its CPU
// pointers, CUDA memory (when built with the cuda option) through its device pointers, never
// copying pixels. Throws std::runtime_error when the buffer cannot be mapped or described.
class MappedFrame {
 public:
  MappedFrame(const GstVideoInfo* info, GstBuffer* buffer);
  ~MappedFrame() {
    if (mapped_) gst_video_frame_unmap(&frame_);
  }
  MappedFrame(const MappedFrame&) = delete;
  MappedFrame& operator=(const MappedFrame&) = delete;
  const autoassign::ImageView& view() const { return view_; }
  int width() const { return GST_VIDEO_FRAME_WIDTH(&frame_); }
  int height() const { return GST_VIDEO_FRAME_HEIGHT(&frame_); }

 private:
  GstVideoFrame frame_{};  // zeroed: frame_view reads its map table
  autoassign::ImageView view_;
  bool mapped_ = false;
};

}  // namespace autoassign::gst
