#include "optim/adamw.hpp"

#include <cmath>

#include "src/core/error.hpp"

namespace temoe {

AdamW::AdamW(ParameterSet& parameters, AdamWConfig config) : parameters_(parameters), config_(config) {
  TEMOE_CHECK(config_.beta1 >= 0.0 && config_.beta1 < 1.0, "AdamW: beta1 " << config_.beta1 << " is not in [0, 1)");
  TEMOE_CHECK(config_.beta2 >= 0.0 && config_.beta2 < 1.0, "AdamW: beta2 " << config_.beta2 << " is not in [0, 1)");
  TEMOE_CHECK(config_.epsilon >= 0.0, "AdamW: epsilon " << config_.epsilon << " is negative");
  TEMOE_CHECK(config_.weight_decay >= 0.0, "AdamW: weight_decay " << config_.weight_decay << " is negative");
  for (const auto& parameter : parameters_.parameters()) {
    TEMOE_CHECK(parameter.value.device() == Device::cpu, "AdamW: parameter '" << parameter.name << "' is not on the host");
    first_moments_.push_back(Tensor::zeros(parameter.value.shape()));
    second_moments_.push_back(Tensor::zeros(parameter.value.shape()));
  }
  learning_rate_scales_.assign(parameters_.parameters().size(), 1.0);
}

void AdamW::set_learning_rate_scale(size_t index, double scale) {
  TEMOE_CHECK(index < learning_rate_scales_.size(),
              "AdamW: parameter index " << index << " outside the set of " << learning_rate_scales_.size());
  TEMOE_CHECK(std::isfinite(scale) && scale >= 0.0,
              "AdamW: learning-rate scale " << scale << " of '" << parameters_.parameters()[index].name
                                            << "' is not a finite non-negative number");
  learning_rate_scales_[index] = scale;
}

// torch.optim.AdamW (single-tensor path), element by element in float32 with the scalar factors
// computed in double and rounded once, as torch's CPU kernels do:
//   p <- p * (1 - lr wd)                                   (decoupled decay, Loshchilov & Hutter)
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void AdamW::step(double learning_rate) {
  auto& parameters = parameters_.parameters();
  TEMOE_CHECK(parameters.size() == first_moments_.size() && parameters.size() == second_moments_.size(),
              "AdamW: the parameter set has " << parameters.size() << " parameters but the optimizer holds moments for "
                                              << first_moments_.size());
  ++step_count_;
  const double t = static_cast<double>(step_count_);
  const float beta1 = static_cast<float>(config_.beta1);
  const float beta2 = static_cast<float>(config_.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - config_.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - config_.beta2);
  const float correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(config_.beta2, t)));
  const float epsilon = static_cast<float>(config_.epsilon);
  for (size_t index = 0; index < parameters.size(); ++index) {
    Parameter& parameter = parameters[index];
    // A scale of 1 changes no bit of the rate.
    const double rate = learning_rate * learning_rate_scales_[index];
    const float decay = static_cast<float>(1.0 - rate * config_.weight_decay);
    const float step_size = static_cast<float>(rate / (1.0 - std::pow(config_.beta1, t)));
    Tensor& first = first_moments_[index];
    Tensor& second = second_moments_[index];
    check_shape(parameter.gradient, parameter.value.shape(), "AdamW gradient");
    check_shape(first, parameter.value.shape(), "AdamW first moment");
    check_shape(second, parameter.value.shape(), "AdamW second moment");
    float* value = parameter.value.data();
    const float* gradient = parameter.gradient.data();
    float* m = first.data();
    float* v = second.data();
    const int64_t count = parameter.value.numel();
    for (int64_t i = 0; i < count; ++i) {
      const float g = gradient[i];
      value[i] *= decay;
      m[i] = m[i] * beta1 + g * one_minus_beta1;
      v[i] = v[i] * beta2 + g * g * one_minus_beta2;
      const float denominator = std::sqrt(v[i]) / correction2_sqrt + epsilon;
      value[i] += -step_size * (m[i] / denominator);
    }
  }
}

}  // namespace temoe
