// SPDX-License-Identifier: MIT
#include "autoassign/train/average.h"

#include <cmath>
#include <stdexcept>

#include "autoassign/infer/checkpoint.h"

namespace autoassign {
namespace {

// The config as the architecture sees it: post-processing is a default of the file, not of
// the weights, so files that differ only there average fine.
std::string architecture_of(ModelConfig config) {
  config.postprocess = PostprocessConfig{};
  return config.to_json(0);
}

}  // namespace

AutoAssign average_models(const std::vector<std::string>& paths, std::vector<double> weights) {
  if (paths.size() < 2) {
    throw std::invalid_argument("averaging needs at least two model files, got " +
                                std::to_string(paths.size()));
  }
  if (weights.empty()) weights.assign(paths.size(), 1.0);
  if (weights.size() != paths.size()) {
    throw std::invalid_argument(std::to_string(weights.size()) + " weights for " +
                                std::to_string(paths.size()) + " model files");
  }
  double total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!std::isfinite(weights[i]) || weights[i] <= 0) {
      throw std::invalid_argument("the weight of " + paths[i] + " must be finite and > 0, got " +
                                  std::to_string(weights[i]));
    }
    total += weights[i];
  }
  torch::NoGradGuard no_grad;
  AutoAssign first = load_model(paths[0]);
  const std::string architecture = architecture_of(first->config());
  auto out = module_tensors(*first);
  // Accumulate in double: the mean of nearly equal fp32 values must not drift by the order of
  // the files.
  std::vector<torch::Tensor> sums(out.size());
  auto add = [&](const std::string& path, std::vector<std::pair<std::string, torch::Tensor>>& all,
                 double w) {
    // The same config builds the same tensors in the same order; checked, not assumed, so a
    // module whose layout stops following its config fails here instead of mixing tensors.
    if (all.size() != out.size()) {
      throw std::invalid_argument(path + " holds " + std::to_string(all.size()) + " tensors, " +
                                  paths[0] + " " + std::to_string(out.size()));
    }
    for (size_t k = 0; k < all.size(); ++k) {
      const auto& [name, t] = all[k];
      if (name != out[k].first || !t.sizes().equals(out[k].second.sizes())) {
        throw std::invalid_argument(path + ": tensor '" + name + "' does not match " + paths[0] +
                                    "'s tensor of that place");
      }
      if (!t.is_floating_point()) continue;
      if (!torch::isfinite(t).all().item<bool>()) {
        throw std::invalid_argument(path + ": tensor '" + name + "' holds a NaN or an infinity");
      }
      const auto term = t.to(torch::kDouble) * (w / total);
      sums[k] = sums[k].defined() ? sums[k] + term : term;
    }
  };
  add(paths[0], out, weights[0]);
  for (size_t i = 1; i < paths.size(); ++i) {
    AutoAssign other = load_model(paths[i]);
    if (architecture_of(other->config()) != architecture) {
      throw std::invalid_argument(paths[i] + " is another architecture than " + paths[0] +
                                  " (their configs differ beyond post-processing): only runs of "
                                  "one architecture average");
    }
    auto all = module_tensors(*other);
    add(paths[i], all, weights[i]);
  }
  for (size_t k = 0; k < out.size(); ++k) {
    if (sums[k].defined()) out[k].second.copy_(sums[k].to(out[k].second.scalar_type()));
  }
  return first;
}

}  // namespace autoassign
