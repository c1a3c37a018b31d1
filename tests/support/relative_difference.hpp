#pragma once
// max |actual - expected| over max |expected|: a comparison of logits (or any tensor) relative to
// their scale, so that near-zero elements do not dominate.
#include <algorithm>
#include <cmath>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe::testing {

inline double max_relative_difference(const std::vector<float>& actual, const Tensor& expected) {
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    worst = std::max(worst, std::fabs(double(actual[static_cast<size_t>(i)]) - expected.data()[i]));
    scale = std::max(scale, std::fabs(double(expected.data()[i])));
  }
  return worst / scale;
}

inline double max_relative_difference(const Tensor& actual, const Tensor& expected) {
  return max_relative_difference(actual.to_vector(), expected);
}

}  // namespace temoe::testing
