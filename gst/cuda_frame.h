/* SPDX-License-Identifier: MIT */
// CUDA frames (video/x-raw(memory:CUDAMemory)): map device memory and describe it as an
// ImageView on cuda:N, so the model reads it without a host round trip. Built only with the
// `cuda` option (gstreamer-cuda-1.0).
#pragma once

#include <gst/video/video.h>

#include "autoassign/types.h"

namespace autoassign::gst {

/// True if the buffer's memory is GstCudaMemory.
bool is_cuda_buffer(GstBuffer* buffer);
/// Maps a CUDA buffer for reading on the device and fills `view` (device pointers, cuda:N).
bool map_cuda_frame(GstVideoFrame* frame, const GstVideoInfo* info, GstBuffer* buffer,
                    ImageView* view);

}  // namespace autoassign::gst
