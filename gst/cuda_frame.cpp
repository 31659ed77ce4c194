/* SPDX-License-Identifier: MIT */
#include "cuda_frame.h"

#include <gst/cuda/gstcudacontext.h>
#include <gst/cuda/gstcudamemory.h>

#include "roi.h"

namespace autoassign::gst {

bool is_cuda_buffer(GstBuffer* buffer) {
  return gst_buffer_n_memory(buffer) > 0 && gst_is_cuda_memory(gst_buffer_peek_memory(buffer, 0));
}

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

}  // namespace autoassign::gst
