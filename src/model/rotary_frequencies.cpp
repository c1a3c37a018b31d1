#include "src/model/rotary_frequencies.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace temoe {

namespace {

// The dimension index whose wavelength makes `rotations` turns over the original context.
double correction_dimension(double rotations, double dimension, double base, double original_positions) {
  return dimension * std::log(original_positions / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

RotaryFrequencies rotary_frequencies(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  const auto dimension = static_cast<double>(config.head_dim);
  const double base = config.rope_theta;
  RotaryFrequencies result;
  result.inverse_frequencies.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    result.inverse_frequencies[static_cast<size_t>(i)] = 1.0 / std::pow(base, static_cast<double>(2 * i) / dimension);
  }
  if (!config.yarn) return result;
  const YarnScaling& yarn = config.yarn_scaling;
  const auto original = static_cast<double>(yarn.original_max_position_embeddings);
  // Dimensions below `low` rotate fast enough to keep their frequency (extrapolate), those above
  // `high` are interpolated by the factor, and a linear ramp blends the two in between.
  double low = correction_dimension(yarn.beta_fast, dimension, base, original);
  double high = correction_dimension(yarn.beta_slow, dimension, base, original);
  if (yarn.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dimension - 1.0);
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_weight = 1.0 - ramp;
    double& frequency = result.inverse_frequencies[static_cast<size_t>(i)];
    frequency = frequency / yarn.factor * (1.0 - extrapolation_weight) + frequency * extrapolation_weight;
  }
  result.scale = yarn.attention_factor;
  return result;
}

}  // namespace temoe
