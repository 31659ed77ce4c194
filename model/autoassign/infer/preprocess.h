// SPDX-License-Identifier: MIT
// Frame -> network input: colour conversion from any ImageView format, aspect-keeping resize,
// normalisation and bottom/right padding. The one implementation that training, the CLI and
// the plugin share.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "autoassign/core/config.h"
#include "autoassign/core/types.h"
#include "autoassign/infer/device.h"
#include "autoassign/infer/postprocess.h"

namespace autoassign {

class Preprocessor {
 public:
  explicit Preprocessor(const InputConfig& config);

  /// Size (width, height) an image of width x height is resized to, before padding.
  std::pair<int, int> scaled_size(int width, int height) const;
  /// Padded network input size (width, height) for a batch whose largest scaled image is
  /// max_w x max_h.
  std::pair<int, int> padded_size(int max_w, int max_h) const;

  /// One image -> [3, H, W] normalised float, padded with zeros, on `device`.
  torch::Tensor operator()(const ImageView& image, ImageGeometry* geometry,
                           const torch::Device& device = torch::kCPU) const;
  /// Images -> [B, 3, H, W], padded to a common size.
  torch::Tensor batch(const std::vector<ImageView>& images, std::vector<ImageGeometry>* geometry,
                      const torch::Device& device = torch::kCPU) const;

  /// Resize + convert to the network's channel order, as 8-bit HWC (before normalisation).
  /// Exposed for the tests and for training-time augmentation.
  torch::Tensor resize_to_u8(const ImageView& image, int out_w, int out_h) const;
  /// uint8 HWC in network channel order -> normalised float CHW written into dst[:, :h, :w].
  void normalise_into(const torch::Tensor& hwc_u8, torch::Tensor dst) const;
  /// The device path of resize_to_u8 (tensor ops only, so a CUDA frame never visits the host):
  /// float [3, out_h, out_w] in 0..255, network channel order. Works on CPU frames too.
  torch::Tensor resize_on_device(const ImageView& image, int out_w, int out_h,
                                 const torch::Device& device) const;

 private:
  void normalise_chw_into(const torch::Tensor& chw, torch::Tensor dst) const;

  InputConfig config_;
};

}  // namespace autoassign
