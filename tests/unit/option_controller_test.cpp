// The controller's hand-written backward against finite differences (double-checked in float
// with a central difference), every parameter group, every head.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/learner/option_controller.hpp"
#include "tests/support/random_batch.hpp"

namespace temoe {
namespace {

constexpr int64_t kHidden = 12, kExperts = 6, kRows = 5;

struct ControllerFixture {
  ParameterSet parameters;
  ControllerConfig config;
  std::vector<float> hidden, router_logits;
  std::vector<int32_t> masks;
  std::unique_ptr<OptionController> controller;

  ControllerFixture() {
    config.k_hat = 3;
    config.embedding_dim = 4;
    config.set_dim = 5;
    config.hidden = 7;
    CounterRandom random(3, {});
    for (int64_t i = 0; i < kRows * kExperts; ++i) router_logits.push_back(static_cast<float>(random.normal()));
    for (int64_t i = 0; i < kRows * kHidden; ++i) hidden.push_back(static_cast<float>(random.normal()));
    masks = {0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5, 2, 3, 5};
    controller = std::make_unique<OptionController>(parameters, 0, kHidden, kExperts, config, 9);
    // Larger output weights than the initialisation, so every path carries gradient.
    testing::add_parameter_noise(parameters, 0.3, 11, [](const std::string& name) { return !is_value_statistic(name); });
  }
};

// The scalar whose gradient is checked: sum of fixed random weights times every head's outputs.
struct Probe {
  std::vector<float> d_beta, d_q, d_selection;
  explicit Probe(uint64_t seed) {
    CounterRandom random(seed, {});
    for (int64_t r = 0; r < kRows; ++r) {
      d_beta.push_back(static_cast<float>(random.normal()));
      d_q.push_back(static_cast<float>(random.normal()));
    }
    for (int64_t i = 0; i < kRows * kExperts; ++i) d_selection.push_back(static_cast<float>(random.normal()));
  }
  double value(const ControllerEvaluation& e) const {
    double total = 0;
    for (int64_t r = 0; r < kRows; ++r) total += d_beta[r] * e.beta[r] + d_q[r] * e.q[r];
    for (int64_t i = 0; i < kRows * kExperts; ++i) total += d_selection[i] * e.selection_logits[i];
    return total;
  }
};

TEST(OptionController, BackwardMatchesFiniteDifferencesForEveryParameter) {
  ControllerFixture setup;
  const Probe probe(17);
  auto& controller = *setup.controller;
  const auto evaluation = controller.evaluate(setup.hidden, setup.masks, kRows, setup.router_logits);
  setup.parameters.zero_gradients();
  controller.backward(evaluation, setup.hidden, setup.masks, probe.d_beta, probe.d_q, probe.d_selection);
  int checked = 0;
  for (auto& parameter : setup.parameters.parameters()) {
    if (is_value_statistic(parameter.name)) continue;  // set by the learner's statistics step, not trained
    // A few entries of each parameter, spread over it.
    const int64_t n = parameter.value.numel();
    for (int64_t i : {int64_t{0}, n / 2, n - 1}) {
      float& x = parameter.value.data()[i];
      const float saved = x;
      const float step = 1e-2f * std::max(1.0f, std::fabs(saved));
      x = saved + step;
      const double up = probe.value(controller.evaluate(setup.hidden, setup.masks, kRows, setup.router_logits));
      x = saved - step;
      const double down = probe.value(controller.evaluate(setup.hidden, setup.masks, kRows, setup.router_logits));
      x = saved;
      const double numeric = (up - down) / (2.0 * step);
      const double analytic = parameter.gradient.data()[i];
      EXPECT_NEAR(analytic, numeric, 2e-3 * std::max(1.0, std::fabs(numeric))) << parameter.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 15 * 3);
  // The scale multiplies Q's gradient: with sigma = 2 every gradient reaching Q's MLP doubles.
  Parameter& scale = setup.parameters.get("layer0.q.target_scale");
  const std::vector<float> before = setup.parameters.get("layer0.q.w2").gradient.to_vector();
  scale.value.fill(2.0f);
  setup.parameters.zero_gradients();
  const std::vector<float> no_beta(kRows, 0.0f), no_selection(kRows * kExperts, 0.0f);
  controller.backward(controller.evaluate(setup.hidden, setup.masks, kRows, setup.router_logits), setup.hidden,
                      setup.masks, no_beta, probe.d_q, no_selection);
  const std::vector<float> doubled = setup.parameters.get("layer0.q.w2").gradient.to_vector();
  for (size_t j = 0; j < before.size(); ++j) EXPECT_FLOAT_EQ(doubled[j], 2 * before[j]);
}

TEST(OptionController, StartsNearTheInitialTerminationProbabilityAndTheRouter) {
  ParameterSet parameters;
  ControllerConfig config;
  config.k_hat = 3;
  std::vector<float> router_logits(kRows * kExperts), hidden(kRows * kHidden);
  CounterRandom random(4, {});
  for (auto& value : router_logits) value = static_cast<float>(random.normal());
  for (auto& value : hidden) value = static_cast<float>(random.normal());
  OptionController controller(parameters, 2, kHidden, kExperts, config, 1);
  const std::vector<int32_t> masks = {0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5, 2, 3, 5};
  const auto evaluation = controller.evaluate(hidden, masks, kRows, router_logits);
  for (int64_t r = 0; r < kRows; ++r) {
    EXPECT_NEAR(evaluation.beta[r], 1.0 / (1.0 + std::exp(3.0)), 0.01);  // about 5% switching
  }
  // The selection delta starts at zero: a reload loads exactly the router's choice.
  EXPECT_EQ(evaluation.selection_logits, router_logits);
  // Without router logits there is no selection.
  EXPECT_TRUE(controller.evaluate(hidden, masks, kRows, {}).selection_logits.empty());
  EXPECT_TRUE(parameters.contains("layer2.termination.b2"));
  parameters.get("layer2.termination.b2").value.data()[0] = 5.0f;
  controller.clamp_termination_bias();
  EXPECT_EQ(parameters.get("layer2.termination.b2").value.data()[0], static_cast<float>(config.termination_bias_max));
}

}  // namespace
}  // namespace temoe
