#include "optim/gradient_clipping.hpp"

#include <cmath>

#include "src/core/error.hpp"

namespace temoe {

double gradient_norm(const ParameterSet& parameters) {
  // Accumulated in double: the sum of squares of many float gradients loses digits in float.
  double sum_of_squares = 0.0;
  for (const auto& parameter : parameters.parameters()) {
    const float* gradient = parameter.gradient.data();
    const int64_t count = parameter.gradient.numel();
    for (int64_t i = 0; i < count; ++i) sum_of_squares += static_cast<double>(gradient[i]) * gradient[i];
  }
  return std::sqrt(sum_of_squares);
}

double clip_gradient_norm(ParameterSet& parameters, double max_norm) {
  TEMOE_CHECK(max_norm > 0.0, "clip_gradient_norm: max_norm " << max_norm << " must be positive");
  const double norm = gradient_norm(parameters);
  // torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient < 1.0 || !std::isfinite(norm)) {
    const float scale = static_cast<float>(coefficient);
    for (auto& parameter : parameters.parameters()) {
      float* gradient = parameter.gradient.data();
      const int64_t count = parameter.gradient.numel();
      for (int64_t i = 0; i < count; ++i) gradient[i] *= scale;
    }
  }
  return norm;
}

}  // namespace temoe
