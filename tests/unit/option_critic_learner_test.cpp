// The option-critic learner: every gradient it accumulates against central finite differences of
// the losses it reports (targets held fixed, as the stop-gradients say), with importance weights;
// its targets for a 3-token, 2-layer case worked out by hand; and the termination advantage
// built from the right masks (w_{t-1} for beta and Q, the greedy reload mask for V_Omega).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/distillation_reward.hpp"
#include "src/learner/plackett_luce.hpp"
#include "tests/support/in_memory_model.hpp"
#include "tests/support/random_batch.hpp"
#include "tests/support/single_process_world.hpp"

namespace temoe {
namespace {

ControllerConfig small_controller() {
  ControllerConfig config;
  config.k_hat = 4;
  config.embedding_dim = 4;
  config.set_dim = 4;
  config.hidden = 6;
  config.termination_bias = -0.5;  // many terminations, so that the selection loss has terms
  config.eta = 0.05;
  config.value_coefficient = 0.7;  // not 1, so that a missing coefficient shows
  config.selection_coefficient = 1.3;
  config.value_statistics_rate = 0.1;  // the statistics step is tested too
  return config;
}

// A tiny model, its controllers (their parameters moved off the initialisation, so that every
// path carries gradient), one sampled-selection rollout, rewards, and importance weights.
struct LearnerFixture {
  std::unique_ptr<testing::InMemoryModel> built = testing::tiny_model(Architecture::mixtral, 8);
  int64_t batch = 2, time = 10;
  ParameterSet parameters;
  std::vector<OptionController> controllers;
  Rollout student;
  std::vector<double> rewards, weights;
  std::vector<uint8_t> ends;
  testing::SingleProcessWorld world;

  LearnerFixture() {
    const auto drawn = testing::random_tokens(built->config.vocab_size, batch * time, 2);
    controllers = make_controllers(parameters, built->config, small_controller(), 1);
    testing::add_parameter_noise(parameters, 0.3, 11, [](const std::string& name) { return !is_value_statistic(name); });
    // Q's target statistics away from (0, 1), so that the scale's paths are exercised.
    for (int64_t layer = 0; layer < built->config.num_layers; ++layer) {
      parameters.get(controller_prefix(layer) + "q.target_mean").value.fill(0.4f);
      parameters.get(controller_prefix(layer) + "q.target_scale").value.fill(2.5f);
    }
    const std::vector<int64_t> ids = {0, 1};
    ControllerPolicy policy(controllers, true, 1);
    const Rollout teacher = run_rollout(*built->model, drawn.tokens, batch, time, nullptr, ids, 0);
    student = run_rollout(*built->model, drawn.tokens, batch, time, &policy, ids, 0);
    rewards = score_tokens(teacher.logits, student.logits, drawn.targets, RewardKind::log_ratio).reward;
    CounterRandom random(3, {});
    for (int64_t i = 0; i < batch * time; ++i) weights.push_back(0.5 + random.uniform());
    ends.assign(static_cast<size_t>(batch * time), 0);
    ends.back() = 1;  // one sequence ends its document, the other is truncated
  }
};

int64_t terminations(const Rollout& rollout) {
  int64_t count = 0;
  for (const auto& decisions : rollout.decisions) count += std::count(decisions.terminated.begin(), decisions.terminated.end(), 1);
  return count;
}

TEST(OptionCriticLearner, EveryGradientMatchesFiniteDifferencesOfTheReportedLosses) {
  LearnerFixture setup;
  ASSERT_GT(terminations(setup.student), 4) << "the rollout needs reloads for the selection loss to have terms";
  OptionCriticLearner learner(setup.controllers, setup.world);
  const auto targets = learner.targets(setup.student, setup.rewards, setup.ends, setup.batch, setup.time);
  setup.parameters.zero_gradients();
  const auto losses = learner.accumulate_gradients(setup.student, targets, setup.batch, setup.time, setup.weights);
  const std::vector<float> analytic = setup.parameters.flatten_gradients();
  for (const auto& layer : losses) {
    ASSERT_NE(layer.q_value, 0.0);
    ASSERT_NE(layer.termination, 0.0);
    ASSERT_NE(layer.selection, 0.0);
  }
  const auto loss_at = [&] {
    return total_loss(learner.accumulate_gradients(setup.student, targets, setup.batch, setup.time, setup.weights),
                      setup.controllers);
  };
  double largest = 0;
  for (float g : analytic) largest = std::max(largest, double(std::fabs(g)));
  ASSERT_GT(largest, 0.0);
  size_t index = 0, checked = 0, nonzero = 0;
  double worst = 0;
  for (auto& parameter : setup.parameters.parameters()) {
    if (is_value_statistic(parameter.name)) {  // set by the statistics step, not by gradient
      index += static_cast<size_t>(parameter.value.numel());
      continue;
    }
    for (int64_t i = 0; i < parameter.value.numel(); ++i, ++index) {
      float& x = parameter.value.data()[i];
      const float saved = x;
      const float step = 1e-2f * std::max(1.0f, std::fabs(saved));
      x = saved + step;
      const double up = loss_at();
      x = saved - step;
      const double down = loss_at();
      x = saved;
      const double numeric = (up - down) / (2.0 * double(step));
      const double error = std::fabs(analytic[index] - numeric);
      worst = std::max(worst, error / largest);
      EXPECT_LE(error, 2e-3 * largest + 2e-3 * std::fabs(numeric)) << parameter.name << "[" << i << "]";
      ++checked;
      nonzero += analytic[index] != 0.0f;
    }
  }
  EXPECT_EQ(checked, analytic.size() - 3 * setup.controllers.size());
  EXPECT_GT(nonzero, checked / 2) << "most parameters should carry gradient";
  std::printf("[ measured ] %zu gradients, largest %.3g, worst |analytic - numeric| / largest %.3g\n", checked, largest, worst);
}

TEST(OptionCriticLearner, WithoutALearnedSelectionNoSelectionGradientAndGreedyReloads) {
  LearnerFixture setup;
  ControllerConfig config = small_controller();
  config.selection_coefficient = 0;
  ParameterSet parameters;
  auto controllers = make_controllers(parameters, setup.built->config, config, 1);
  // Training reloads what evaluation would: the sampling policy's masks are the greedy policy's.
  const std::vector<int32_t> tokens(static_cast<size_t>(setup.batch * setup.time), 3);
  const std::vector<int64_t> ids = {0, 1};
  ControllerPolicy sampling(controllers, true, 1), greedy(controllers, false, 1);
  const Rollout trained = run_rollout(*setup.built->model, tokens, setup.batch, setup.time, &sampling, ids, 0);
  ASSERT_GT(terminations(trained), 0);
  for (size_t layer = 0; layer < trained.decisions.size(); ++layer) {
    const auto& decisions = trained.decisions[layer];
    const int64_t experts = setup.built->config.num_experts;
    for (size_t i = 0; i < decisions.terminated.size(); ++i) {
      if (!decisions.terminated[i]) continue;
      const std::span<const float> logits(trained.router_logits[layer].data() + i * experts, static_cast<size_t>(experts));
      EXPECT_EQ(std::vector<int32_t>(decisions.selected_tuples.begin() + i * config.k_hat,
                                     decisions.selected_tuples.begin() + (i + 1) * config.k_hat),
                greedy_top(logits, config.k_hat));
    }
  }
  OptionCriticLearner learner(controllers, setup.world);
  parameters.zero_gradients();
  learner.accumulate_gradients(trained, std::vector<double>(tokens.size(), -0.1), setup.ends, setup.batch, setup.time);
  for (const auto& parameter : parameters.parameters()) {
    if (!is_selection_parameter(parameter.name)) continue;
    for (int64_t i = 0; i < parameter.gradient.numel(); ++i) ASSERT_EQ(parameter.gradient.data()[i], 0.0f) << parameter.name;
  }
}

TEST(OptionCriticLearner, TheValueStatisticsStepKeepsEveryQAndStandardisesTheTargets) {
  LearnerFixture setup;
  OptionCriticLearner learner(setup.controllers, setup.world);
  const auto targets = learner.targets(setup.student, setup.rewards, setup.ends, setup.batch, setup.time);
  const auto before = learner.targets(setup.student, setup.rewards, setup.ends, setup.batch, setup.time);
  for (auto& parameter : setup.parameters.parameters()) {
    if (parameter.name.ends_with("q.target_updates")) parameter.value.fill(0.0f);  // the first step sets them outright
  }
  learner.update_value_statistics(targets);
  const auto after = learner.targets(setup.student, setup.rewards, setup.ends, setup.batch, setup.time);
  for (size_t layer = 0; layer < targets.size(); ++layer) {
    // Same Q values (PopArt preserves outputs), so the same targets and V_Omega.
    for (size_t i = 0; i < targets[layer].q_target.size(); ++i) {
      EXPECT_NEAR(after[layer].reload_value[i], before[layer].reload_value[i], 1e-4 * (1 + std::fabs(before[layer].reload_value[i])));
      EXPECT_NEAR(after[layer].q_target[i], before[layer].q_target[i], 1e-4 * (1 + std::fabs(before[layer].q_target[i])));
    }
    // The standardised targets of this batch have mean 0 and variance 1 (up to the scale floor).
    const auto& controller = setup.controllers[layer];
    const double mean = setup.parameters.get(controller_prefix(static_cast<int64_t>(layer)) + "q.target_mean").value.data()[0];
    double sum = 0, square = 0, count = 0;
    for (size_t i = 0; i < targets[layer].q_target.size(); ++i) {
      if (!targets[layer].valid[i]) continue;
      const double z = (targets[layer].q_target[i] - mean) / controller.value_scale();
      sum += z;
      square += z * z;
      count += 1;
    }
    EXPECT_NEAR(sum / count, 0.0, 1e-4);
    EXPECT_NEAR(square / count, 1.0, 1e-2);
  }
}

// A rollout made by hand: B = 1, T = 3, two layers, with chosen masks and terminations.
struct HandRollout {
  static constexpr int64_t kHidden = 5, kExperts = 4, kKHat = 2;
  Rollout rollout;
  explicit HandRollout(uint64_t seed) {
    CounterRandom random(seed, {});
    for (int layer = 0; layer < 2; ++layer) {
      Tensor hidden({3, kHidden}), router({3, kExperts});
      for (int64_t i = 0; i < hidden.numel(); ++i) hidden.data()[i] = static_cast<float>(random.normal());
      for (int64_t i = 0; i < router.numel(); ++i) router.data()[i] = static_cast<float>(random.normal());
      rollout.hidden.push_back(hidden);
      rollout.router_logits.push_back(router);
    }
    // Layer 0 holds {0, 1}, reloads {2, 3} at t = 1 (tuple 3, 2), holds it at t = 2.
    LayerDecisions zero;
    zero.k_hat = kKHat;
    zero.masks = {0, 1, 2, 3, 2, 3};
    zero.previous_masks = {0, 1, 0, 1, 2, 3};
    zero.terminated = {0, 1, 0};
    zero.switched = {0, 1, 0};
    zero.selected_tuples = {-1, -1, 3, 2, -1, -1};
    // Layer 1 holds {1, 3} throughout.
    LayerDecisions one;
    one.k_hat = kKHat;
    one.masks = {1, 3, 1, 3, 1, 3};
    one.previous_masks = one.masks;
    one.terminated = {0, 0, 0};
    one.switched = {0, 0, 0};
    one.selected_tuples = {-1, -1, -1, -1, -1, -1};
    rollout.decisions = {zero, one};
  }
};

ControllerConfig hand_config() {
  ControllerConfig config;
  config.k_hat = HandRollout::kKHat;
  config.embedding_dim = 3;
  config.set_dim = 3;
  config.hidden = 4;
  config.gamma = 0.5;
  config.lambda = 0.5;
  config.eta = 0.1;
  return config;
}

TEST(OptionCriticLearner, HandComputedTargetsForThreeTokensAndTwoLayers) {
  // Constant heads: Q = 0.5 and beta = 1/2 in layer 0, Q = -1 and beta = 3/4 in layer 1 (every
  // weight feeding them zero), so that every target can be worked out on paper.
  ParameterSet parameters;
  std::vector<OptionController> controllers;
  for (int64_t layer = 0; layer < 2; ++layer) {
    controllers.emplace_back(parameters, layer, HandRollout::kHidden, HandRollout::kExperts, hand_config(), 1);
  }
  for (auto& parameter : parameters.parameters()) {
    if (parameter.name.ends_with("termination.w2") || parameter.name.ends_with("q.w2")) parameter.value.fill(0.0f);
  }
  parameters.get("layer0.q.b2").value.fill(0.5f);
  parameters.get("layer0.termination.b2").value.fill(0.0f);
  parameters.get("layer1.q.b2").value.fill(-1.0f);
  parameters.get("layer1.termination.b2").value.fill(static_cast<float>(std::log(3.0)));
  const HandRollout hand(4);
  testing::SingleProcessWorld world;
  OptionCriticLearner learner(controllers, world);
  const std::vector<double> rewards = {0.2, -0.1, 0.4};
  const std::vector<uint8_t> ends = {0, 0, 1};
  const auto targets = learner.targets(hand.rollout, rewards, ends, 1, 3);
  // Layer 0, d = (0, 1, 0): G2 = 0.4; U = 0.5 (0.5 - 0.1) + 0.5 * 0.5 = 0.45;
  //   G1 = -0.1 + 0.5 * 0.45 + 0.25 (0.4 - 0.45) = 0.1125;
  //   G0 = 0.2 + 0.5 * 0.45 + 0.25 (0.1125 - 0.1 - 0.45) = 0.315625 (eta paid at t = 1).
  // Layer 1, no terminations: U = 0.75 (-1 - 0.1) + 0.25 (-1) = -1.075;
  //   G1 = -0.1 - 0.5375 + 0.25 (0.4 + 1.075) = -0.26875;
  //   G0 = 0.2 - 0.5375 + 0.25 (-0.26875 + 1.075) = -0.1359375.
  const double tolerance = 1e-6;  // the heads are float
  EXPECT_NEAR(targets[0].q_target[0], 0.315625, tolerance);
  EXPECT_NEAR(targets[0].q_target[1], 0.1125, tolerance);
  EXPECT_NEAR(targets[0].q_target[2], 0.4, tolerance);
  EXPECT_NEAR(targets[1].q_target[0], -0.1359375, tolerance);
  EXPECT_NEAR(targets[1].q_target[1], -0.26875, tolerance);
  EXPECT_NEAR(targets[1].q_target[2], 0.4, tolerance);
  for (int layer = 0; layer < 2; ++layer) {
    // A^beta = Q(h, w_{t-1}) - V_Omega(h) + eta = eta when Q is constant; none at t = 0.
    EXPECT_EQ(targets[layer].termination_advantage[0], 0.0);
    EXPECT_NEAR(targets[layer].termination_advantage[1], 0.1, tolerance);
    EXPECT_NEAR(targets[layer].termination_advantage[2], 0.1, tolerance);
    EXPECT_EQ(targets[layer].valid_count, 3);
    EXPECT_EQ(targets[layer].termination_count, 2);
  }
  // The one reload (layer 0, t = 1): G1 - V_Omega = 0.1125 - 0.5.
  EXPECT_NEAR(targets[0].selection_advantage[1], -0.3875, tolerance);
  EXPECT_EQ(targets[0].selection_count, 1);
  EXPECT_EQ(targets[1].selection_count, 0);
  parameters.zero_gradients();
  const auto losses = learner.accumulate_gradients(hand.rollout, targets, 1, 3);
  // Q loss: mean 0.5 (0.5 - G)^2 over the 3 positions; termination: mean beta * eta over t = 1, 2.
  const double q0 = (std::pow(0.5 - 0.315625, 2) + std::pow(0.5 - 0.1125, 2) + std::pow(0.5 - 0.4, 2)) / 6;
  EXPECT_NEAR(losses[0].q_value, q0, tolerance);
  EXPECT_NEAR(losses[0].termination, 0.5 * 0.1, tolerance);
  EXPECT_NEAR(losses[1].termination, 0.75 * 0.1, tolerance);
  EXPECT_NEAR(losses[0].termination_probability, 0.5, tolerance);
  EXPECT_NEAR(losses[0].value, 0.5 * std::pow(0.5 - 0.1125, 2), tolerance);
}

TEST(OptionCriticLearner, TerminationAdvantageComparesTheHeldMaskWithTheGreedyReload) {
  // Heads that depend on the mask: the advantage at t must be Q(h_t, w_{t-1}) - Q(h_t, w_hat_t) + eta,
  // with w_hat_t the greedy top-k_hat of the router's logits (the selection delta is zero).
  ParameterSet parameters;
  std::vector<OptionController> controllers;
  for (int64_t layer = 0; layer < 2; ++layer) {
    controllers.emplace_back(parameters, layer, HandRollout::kHidden, HandRollout::kExperts, hand_config(), 1);
  }
  testing::add_parameter_noise(parameters, 1.0, 5,
                               [](const std::string& name) { return !is_selection_parameter(name) && !is_value_statistic(name); });
  const HandRollout hand(6);
  testing::SingleProcessWorld world;
  OptionCriticLearner learner(controllers, world);
  const std::vector<double> rewards = {0.3, 0.1, -0.2};
  const std::vector<uint8_t> ends = {0, 0, 1};
  const auto targets = learner.targets(hand.rollout, rewards, ends, 1, 3);
  constexpr int64_t k_hat = HandRollout::kKHat, experts = HandRollout::kExperts;
  bool reload_differs_from_both = false;
  for (int64_t layer = 0; layer < 2; ++layer) {
    const auto& decisions = hand.rollout.decisions[static_cast<size_t>(layer)];
    const auto& hidden = hand.rollout.hidden[static_cast<size_t>(layer)];
    const auto& router = hand.rollout.router_logits[static_cast<size_t>(layer)];
    for (int64_t t = 1; t < 3; ++t) {
      const std::span<const float> h(hidden.data() + t * HandRollout::kHidden, HandRollout::kHidden);
      const std::span<const float> logits(router.data() + t * experts, experts);
      std::vector<int32_t> reload = greedy_top(logits, k_hat);
      std::sort(reload.begin(), reload.end());
      const std::vector<int32_t> previous(decisions.previous_masks.begin() + t * k_hat, decisions.previous_masks.begin() + (t + 1) * k_hat);
      const std::vector<int32_t> current(decisions.masks.begin() + t * k_hat, decisions.masks.begin() + (t + 1) * k_hat);
      reload_differs_from_both = reload_differs_from_both || (reload != previous && reload != current);
      const auto& controller = controllers[static_cast<size_t>(layer)];
      const double q_previous = controller.evaluate(h, previous, 1, logits).q[0];
      const double q_reload = controller.evaluate(h, reload, 1, logits).q[0];
      EXPECT_NEAR(targets[layer].termination_advantage[t], q_previous - q_reload + 0.1, 1e-6) << "layer " << layer << " t " << t;
      EXPECT_NEAR(targets[layer].reload_value[t], q_reload, 1e-6);
    }
  }
  EXPECT_TRUE(reload_differs_from_both) << "the case must tell the three masks apart";
}

}  // namespace
}  // namespace temoe
