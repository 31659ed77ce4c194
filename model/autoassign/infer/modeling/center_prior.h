// SPDX-License-Identifier: MIT
// Category-wise Gaussian centre prior G (AUTOASSIGN.md section 2): one learnable (mu, sigma)
// pair per class and axis, shared by all levels, on offsets measured in the location's stride.
#pragma once

#include <torch/torch.h>

namespace autoassign {

class CenterPriorImpl : public torch::nn::Module {
 public:
  /// mu [K, 2] = 0 and sigma [K, 2] = 1, sized by the dataset's classes (not [OFF]'s fixed 80).
  explicit CenterPriorImpl(int64_t num_classes);

  /// G for (gt, location) pairs. points [P, 2] and strides [P] of the locations, centres
  /// [P, 2] and labels [P] (int64) of their gts -> [P]:
  ///   delta = (p - g) / s;  G = prod_a exp(-(delta_a - mu_{c,a})^2 / (2 sigma_{c,a}^2)).
  torch::Tensor forward(const torch::Tensor& points, const torch::Tensor& strides,
                        const torch::Tensor& centers, const torch::Tensor& labels);

  torch::Tensor mu, sigma;
};
TORCH_MODULE(CenterPrior);

}  // namespace autoassign
