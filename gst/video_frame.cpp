/* SPDX-License-Identifier: MIT */
#include "video_frame.h"

#include <stdexcept>
#include <string>

#ifdef AUTOASSIGN_WITH_CUDA
#include <gst/cuda/gstcudacontext.h>
#include <gst/cuda/gstcudamemory.h>
#endif

namespace autoassign::gst {

bool to_pixel_format(GstVideoFormat format, PixelFormat* out) {
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
      *out = PixelFormat::kRGB;
      return true;
    case GST_VIDEO_FORMAT_BGR:
      *out = PixelFormat::kBGR;
      return true;
    case GST_VIDEO_FORMAT_RGBx:
      *out = PixelFormat::kRGBx;
      return true;
    case GST_VIDEO_FORMAT_BGRx:
      *out = PixelFormat::kBGRx;
      return true;
    case GST_VIDEO_FORMAT_RGBA:
      *out = PixelFormat::kRGBA;
      return true;
    case GST_VIDEO_FORMAT_BGRA:
      *out = PixelFormat::kBGRA;
      return true;
    case GST_VIDEO_FORMAT_NV12:
      *out = PixelFormat::kNV12;
      return true;
    case GST_VIDEO_FORMAT_I420:
      *out = PixelFormat::kI420;
      return true;
    case GST_VIDEO_FORMAT_GRAY8:
      *out = PixelFormat::kGRAY8;
      return true;
    default:
      return false;
  }
}

ImageView frame_view(const GstVideoFrame* frame) {
  ImageView v;
  if (!to_pixel_format(GST_VIDEO_FRAME_FORMAT(frame), &v.format)) {
    throw std::invalid_argument(std::string("unsupported video format ") +
                                gst_video_format_to_string(GST_VIDEO_FRAME_FORMAT(frame)));
  }
  v.width = GST_VIDEO_FRAME_WIDTH(frame);
  v.height = GST_VIDEO_FRAME_HEIGHT(frame);
  // The caps' colorimetry decides the YUV matrix (BT.709 for HD cameras) and range.
  const GstVideoColorimetry& colour = GST_VIDEO_INFO_COLORIMETRY(&frame->info);
  v.matrix = colour.matrix == GST_VIDEO_COLOR_MATRIX_BT709    ? YuvMatrix::kBT709
             : colour.matrix == GST_VIDEO_COLOR_MATRIX_BT2020 ? YuvMatrix::kBT2020
                                                              : YuvMatrix::kBT601;
  v.full_range = colour.range == GST_VIDEO_COLOR_RANGE_0_255;
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(frame) && p < 3; ++p) {
    v.planes[p] = static_cast<const std::uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(frame, p));
    v.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE(frame, p);
    // The bytes mapped from the plane's start to the end of the memory holding it, so that a
    // GstVideoMeta whose strides or offsets overrun the buffer is refused, not read past.
    for (guint m = 0; m < GST_VIDEO_FRAME_N_PLANES(frame); ++m) {
      const GstMapInfo& map = frame->map[m];
      if (!map.data || map.size == 0) continue;
      if (v.planes[p] >= map.data && v.planes[p] < map.data + map.size) {
        v.sizes[p] = static_cast<std::size_t>(map.data + map.size - v.planes[p]);
        break;
      }
    }
  }
  return v;
}

#ifdef AUTOASSIGN_WITH_CUDA
bool is_cuda_buffer(GstBuffer* buffer) {
  return gst_buffer_n_memory(buffer) > 0 && gst_is_cuda_memory(gst_buffer_peek_memory(buffer, 0));
}

namespace {

// Maps a CUDA buffer for reading on the device and fills `view` (device pointers, cuda:N).
bool map_cuda_frame(GstVideoFrame* frame, const GstVideoInfo* info, GstBuffer* buffer,
                    ImageView* view) {
  auto* mem = reinterpret_cast<GstCudaMemory*>(gst_buffer_peek_memory(buffer, 0));
  guint device_id = 0;
  g_object_get(mem->context, "cuda-device-id", &device_id, nullptr);
  // GST_MAP_CUDA: plane pointers are device pointers (the memory's pending work is synced).
  if (!gst_video_frame_map(frame, const_cast<GstVideoInfo*>(info), buffer,
                           static_cast<GstMapFlags>(GST_MAP_READ | GST_MAP_CUDA))) {
    return false;
  }
  *view = frame_view(frame);
  view->device.type = Device::Type::kCuda;
  view->device.index = static_cast<int>(device_id);
  return true;
}

}  // namespace
#else
bool is_cuda_buffer(GstBuffer*) { return false; }
#endif

MappedFrame::MappedFrame(const GstVideoInfo* info, GstBuffer* buffer) {
#ifdef AUTOASSIGN_WITH_CUDA
  if (is_cuda_buffer(buffer)) {
    mapped_ = map_cuda_frame(&frame_, info, buffer, &view_);
    if (!mapped_) throw std::runtime_error("cannot map the CUDA video frame");
    return;
  }
#endif
  mapped_ = gst_video_frame_map(&frame_, const_cast<GstVideoInfo*>(info), buffer, GST_MAP_READ);
  if (!mapped_) throw std::runtime_error("cannot map the video frame for reading");
  try {
    view_ = frame_view(&frame_);
  } catch (...) {
    // A constructor that throws runs no destructor: unmap here, or the mapping leaks.
    gst_video_frame_unmap(&frame_);
    mapped_ = false;
    throw;
  }
}

}  // namespace autoassign::gst
