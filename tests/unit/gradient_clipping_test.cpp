// Global-norm gradient clipping by hand: a 3-4-12 norm of 13, clipped and unclipped.
#include <gtest/gtest.h>

#include <cmath>

#include "optim/gradient_clipping.hpp"
#include "src/core/error.hpp"

namespace temoe {
namespace {

ParameterSet three_four_twelve() {
  ParameterSet parameters;
  parameters.add("a", {2}).gradient = Tensor::from_vector({2}, {3.0f, 4.0f});
  parameters.add("b", {1, 1}).gradient = Tensor::from_vector({1, 1}, {-12.0f});
  return parameters;
}

TEST(GradientClipping, NormIsGlobalAcrossParameters) {
  const ParameterSet parameters = three_four_twelve();
  EXPECT_DOUBLE_EQ(gradient_norm(parameters), 13.0);
}

TEST(GradientClipping, ScalesToMaxNormAndReturnsNormBefore) {
  ParameterSet parameters = three_four_twelve();
  EXPECT_DOUBLE_EQ(clip_gradient_norm(parameters, 6.5), 13.0);
  const double scale = 6.5 / (13.0 + 1e-6);
  EXPECT_FLOAT_EQ(parameters.get("a").gradient.data()[0], static_cast<float>(3.0 * scale));
  EXPECT_FLOAT_EQ(parameters.get("a").gradient.data()[1], static_cast<float>(4.0 * scale));
  EXPECT_FLOAT_EQ(parameters.get("b").gradient.data()[0], static_cast<float>(-12.0 * scale));
  EXPECT_NEAR(gradient_norm(parameters), 6.5, 1e-5);
}

TEST(GradientClipping, LeavesSmallGradientsUntouched) {
  ParameterSet parameters = three_four_twelve();
  EXPECT_DOUBLE_EQ(clip_gradient_norm(parameters, 100.0), 13.0);
  EXPECT_EQ(parameters.get("a").gradient.data()[0], 3.0f);
  EXPECT_EQ(parameters.get("b").gradient.data()[0], -12.0f);
}

TEST(GradientClipping, NonFiniteNormIsReturned) {
  ParameterSet parameters = three_four_twelve();
  parameters.get("a").gradient.data()[0] = std::nanf("");
  EXPECT_TRUE(std::isnan(clip_gradient_norm(parameters, 1.0)));
}

TEST(GradientClipping, RejectsNonPositiveMaxNorm) {
  ParameterSet parameters = three_four_twelve();
  EXPECT_THROW(clip_gradient_norm(parameters, 0.0), Error);
}

}  // namespace
}  // namespace temoe
