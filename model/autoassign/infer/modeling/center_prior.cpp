// SPDX-License-Identifier: MIT
#include "autoassign/infer/modeling/center_prior.h"

namespace autoassign {

CenterPriorImpl::CenterPriorImpl(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "CenterPrior: num_classes must be >= 1, got ", num_classes);
  mu = register_parameter("mu", torch::zeros({num_classes, 2}));
  sigma = register_parameter("sigma", torch::ones({num_classes, 2}));
}

torch::Tensor CenterPriorImpl::forward(const torch::Tensor& points, const torch::Tensor& strides,
                                       const torch::Tensor& centers, const torch::Tensor& labels) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 2, "CenterPrior: points must be [P, 2], got ",
              points.sizes());
  TORCH_CHECK(centers.sizes() == points.sizes(), "CenterPrior: centers ", centers.sizes(),
              " must match points ", points.sizes());
  TORCH_CHECK(strides.dim() == 1 && labels.dim() == 1 && strides.size(0) == points.size(0) &&
                  labels.size(0) == points.size(0),
              "CenterPrior: strides ", strides.sizes(), " and labels ", labels.sizes(),
              " must be [P] with P = ", points.size(0));
  auto delta = (points - centers) / strides.unsqueeze(1);  // [P, 2] delta_nj
  auto mu_c = mu.index_select(0, labels);                  // [P, 2]
  auto sigma_c = sigma.index_select(0, labels);            // [P, 2]
  // The product over the axes is the exp of the summed exponents.
  auto exponent = (delta - mu_c).pow(2) / (2 * sigma_c.pow(2));
  return torch::exp(-exponent.sum(1));  // [P] G_nj
}

}  // namespace autoassign
