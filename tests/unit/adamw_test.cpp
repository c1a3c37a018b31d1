// AdamW and gradient clipping against torch.optim.AdamW + torch.nn.utils.clip_grad_norm_ on the
// fixture of tests/reference/make_optim_fixtures.py (5 steps, a different learning rate each step,
// some steps clipped and some not), to 1e-6 relative; plus the hand-checkable cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "optim/adamw.hpp"
#include "optim/gradient_clipping.hpp"
#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(TEMOE_FIXTURE_DIR) / "optim";

// |actual - expected| <= 1e-6 |expected| per element (plus 1e-12 for exact zeros). With
// `scale_by_largest`, 1e-6 of the tensor's largest magnitude instead: a moment that is a sum of
// gradients of both signs can cancel to far below its terms, and then the last-bit difference
// between torch's float32 clip coefficient and ours is amplified in relative terms.
void expect_close(const float* actual, const float* expected, int64_t count, const std::string& what,
                  bool scale_by_largest = false) {
  double largest = 0.0;
  for (int64_t i = 0; i < count; ++i) largest = std::max(largest, std::abs(static_cast<double>(expected[i])));
  int failures = 0;
  for (int64_t i = 0; i < count && failures < 5; ++i) {
    const double magnitude = scale_by_largest ? largest : std::abs(static_cast<double>(expected[i]));
    const double tolerance = 1e-6 * magnitude + 1e-12;
    if (std::abs(static_cast<double>(actual[i]) - expected[i]) > tolerance) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs torch " << expected[i];
      ++failures;
    }
  }
}

nlohmann::json read_fixture_config() {
  std::ifstream stream(kFixture / "config.json");
  if (!stream) throw Error((kFixture / "config.json").string() + ": cannot open (run tests/reference/make_optim_fixtures.py)");
  return nlohmann::json::parse(stream);
}

TEST(AdamW, MatchesTorchWithClippingOverFiveSteps) {
  const auto config = read_fixture_config();
  const int steps = config["steps"].get<int>();
  const auto names = config["parameters"].get<std::vector<std::string>>();
  const auto learning_rates = config["learning_rates"].get<std::vector<double>>();
  const double max_norm = config["max_norm"].get<double>();

  ParameterSet parameters;
  std::vector<Tensor> gradients, values;
  for (const auto& name : names) {
    const Tensor initial = read_float_npy(kFixture / (name + "_initial.npy"));
    Parameter& parameter = parameters.add(name, initial.shape());
    std::copy(initial.data(), initial.data() + initial.numel(), parameter.value.data());
    gradients.push_back(read_float_npy(kFixture / (name + "_gradients.npy")));
    values.push_back(read_float_npy(kFixture / (name + "_values.npy")));
    ASSERT_EQ(gradients.back().dim(0), steps);
  }
  const Tensor norms = read_float_npy(kFixture / "norms.npy");

  AdamWConfig adamw;
  adamw.beta1 = config["beta1"].get<double>();
  adamw.beta2 = config["beta2"].get<double>();
  adamw.epsilon = config["epsilon"].get<double>();
  adamw.weight_decay = config["weight_decay"].get<double>();
  AdamW optimizer(parameters, adamw);
  int clipped_steps = 0;
  for (int step = 0; step < steps; ++step) {
    for (size_t p = 0; p < names.size(); ++p) {
      Parameter& parameter = parameters.parameters()[p];
      const int64_t count = parameter.value.numel();
      std::copy(gradients[p].data() + step * count, gradients[p].data() + (step + 1) * count, parameter.gradient.data());
    }
    const double norm = clip_gradient_norm(parameters, max_norm);
    EXPECT_NEAR(norm, norms.data()[step], 1e-6 * norms.data()[step]) << "step " << step;
    if (norm > max_norm) {
      ++clipped_steps;
      EXPECT_NEAR(gradient_norm(parameters), max_norm, 1e-5);
    }
    optimizer.step(learning_rates[static_cast<size_t>(step)]);
    for (size_t p = 0; p < names.size(); ++p) {
      const Parameter& parameter = parameters.parameters()[p];
      const int64_t count = parameter.value.numel();
      expect_close(parameter.value.data(), values[p].data() + step * count, count,
                   names[p] + " after step " + std::to_string(step + 1));
    }
  }
  EXPECT_GT(clipped_steps, 0);
  EXPECT_LT(clipped_steps, steps);
  EXPECT_EQ(optimizer.step_count(), steps);
  for (size_t p = 0; p < names.size(); ++p) {
    const Tensor exp_avg = read_float_npy(kFixture / (names[p] + "_exp_avg.npy"));
    const Tensor exp_avg_sq = read_float_npy(kFixture / (names[p] + "_exp_avg_sq.npy"));
    expect_close(optimizer.first_moments()[p].data(), exp_avg.data(), exp_avg.numel(), names[p] + " exp_avg", true);
    expect_close(optimizer.second_moments()[p].data(), exp_avg_sq.data(), exp_avg_sq.numel(), names[p] + " exp_avg_sq", true);
  }
}

// The first update of Adam moves every element by lr * sign(g) (bias correction makes m/sqrt(v)
// = g/|g|), after the decoupled decay p * (1 - lr wd).
TEST(AdamW, FirstStepIsDecayPlusSignedLearningRate) {
  ParameterSet parameters;
  Parameter& parameter = parameters.add("w", {3});
  parameter.value = Tensor::from_vector({3}, {1.0f, -2.0f, 0.5f});
  parameter.gradient = Tensor::from_vector({3}, {0.3f, -4.0f, 1e-3f});
  AdamWConfig config;
  config.weight_decay = 0.5;
  config.epsilon = 0.0;
  AdamW optimizer(parameters, config);
  optimizer.step(0.1);
  const double decay = 1.0 - 0.1 * 0.5;
  EXPECT_NEAR(parameter.value.data()[0], 1.0 * decay - 0.1, 1e-6);
  EXPECT_NEAR(parameter.value.data()[1], -2.0 * decay + 0.1, 1e-6);
  EXPECT_NEAR(parameter.value.data()[2], 0.5 * decay - 0.1, 1e-6);
  EXPECT_EQ(optimizer.step_count(), 1);
}

TEST(AdamW, AScaledParameterMovesAtItsOwnRateAndTheOthersAreUntouched) {
  // Two parameters with the same values and gradients; the second at a tenth of the rate takes
  // exactly the steps a lone AdamW at that rate takes, the first exactly those at the full rate.
  const auto make = [](ParameterSet& set, const std::string& name) {
    Parameter& p = set.add(name, {2});
    p.value = Tensor::from_vector({2}, {0.7f, -1.2f});
    return &p;
  };
  ParameterSet both, full_only, tenth_only;
  Parameter* first = make(both, "a");
  Parameter* second = make(both, "b");
  Parameter* full = make(full_only, "a");
  Parameter* tenth = make(tenth_only, "b");
  AdamWConfig config;
  config.weight_decay = 0.2;
  AdamW scaled(both, config), reference_full(full_only, config), reference_tenth(tenth_only, config);
  scaled.set_learning_rate_scale(1, 0.1);
  EXPECT_EQ(scaled.learning_rate_scale(0), 1.0);
  for (int step = 0; step < 3; ++step) {
    for (Parameter* p : {first, second, full, tenth}) p->gradient = Tensor::from_vector({2}, {0.5f - static_cast<float>(step), 2.0f});
    scaled.step(0.05);
    reference_full.step(0.05);
    reference_tenth.step(0.05 * 0.1);
  }
  EXPECT_EQ(first->value.to_vector(), full->value.to_vector());
  EXPECT_EQ(second->value.to_vector(), tenth->value.to_vector());
  EXPECT_NE(first->value.to_vector(), second->value.to_vector());
  EXPECT_THROW(scaled.set_learning_rate_scale(2, 0.5), Error);
  EXPECT_THROW(scaled.set_learning_rate_scale(0, -1.0), Error);
}

TEST(AdamW, ZeroGradientOnlyDecays) {
  ParameterSet parameters;
  Parameter& parameter = parameters.add("w", {2});
  parameter.value = Tensor::from_vector({2}, {1.0f, -3.0f});
  AdamWConfig config;
  config.weight_decay = 0.1;
  AdamW optimizer(parameters, config);
  optimizer.step(0.01);
  EXPECT_FLOAT_EQ(parameter.value.data()[0], static_cast<float>(1.0 * (1.0 - 0.001)));
  EXPECT_FLOAT_EQ(parameter.value.data()[1], static_cast<float>(-3.0 * (1.0 - 0.001)));
}

TEST(AdamW, RejectsBadHyperParameters) {
  ParameterSet parameters;
  parameters.add("w", {2});
  AdamWConfig config;
  config.beta1 = 1.0;
  EXPECT_THROW(AdamW(parameters, config), Error);
  config.beta1 = 0.9;
  config.weight_decay = -1.0;
  EXPECT_THROW(AdamW(parameters, config), Error);
}

}  // namespace
}  // namespace temoe
