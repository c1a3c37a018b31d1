// The option-critic learner's per-position importance weights (sampled rollouts): weights of 1
// change no bit of the gradients or losses, and a weight c on every position scales every loss term
// and gradient by c while the termination probability it reports stays put. Per-layer costs (the
// communication cost of issue 7) act exactly as the same amounts taken from that layer's reward.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/distillation_reward.hpp"
#include "tests/support/in_memory_model.hpp"
#include "tests/support/random_batch.hpp"
#include "tests/support/single_process_world.hpp"

namespace temoe {
namespace {

// A tiny model, its controllers, one teacher-forced rollout and its rewards.
struct LearnerSetup {
  std::unique_ptr<testing::InMemoryModel> built = testing::tiny_model(Architecture::mixtral, 8);
  int64_t batch = 2, time = 12;
  ParameterSet parameters;
  std::vector<OptionController> controllers;
  Rollout student;
  TokenScores scores;
  std::vector<uint8_t> ends;
  testing::SingleProcessWorld world;

  LearnerSetup() {
    const auto [tokens, targets] = testing::random_tokens(built->config.vocab_size, batch * time, 2);
    const std::vector<int64_t> ids = {0, 1};
    ControllerConfig config;
    config.k_hat = 4;
    config.termination_bias = -1.0;  // some terminations, so that the selection loss has terms
    controllers = make_controllers(parameters, built->config, config, 1);
    ControllerPolicy policy(controllers, true, 1);
    const Rollout teacher = run_rollout(*built->model, tokens, batch, time, nullptr, ids, 0);
    student = run_rollout(*built->model, tokens, batch, time, &policy, ids, 0);
    scores = score_tokens(teacher.logits, student.logits, targets, RewardKind::log_ratio);
    ends.assign(static_cast<size_t>(batch * time), 0);
    ends.back() = 1;  // one sequence ends its document, the other is truncated
  }

  std::pair<std::vector<LayerLosses>, std::vector<float>> learn(std::span<const double> rewards,
                                                                std::span<const double> weights,
                                                                std::span<const double> layer_costs = {}) {
    OptionCriticLearner learner(controllers, world);
    parameters.zero_gradients();
    auto losses = learner.accumulate_gradients(student, rewards, ends, batch, time, weights, layer_costs);
    return {losses, parameters.flatten_gradients()};
  }
};

TEST(ImportanceWeightedLearning, UnitWeightsChangeNothingAndAConstantWeightScalesEveryTerm) {
  LearnerSetup setup;
  const int64_t batch = setup.batch, time = setup.time;
  const auto learn = [&](std::span<const double> weights) { return setup.learn(setup.scores.reward, weights); };
  const auto [plain_losses, plain] = learn({});
  const std::vector<double> ones(static_cast<size_t>(batch * time), 1.0), twos(ones.size(), 2.0);
  const auto [unit_losses, unit] = learn(ones);
  EXPECT_EQ(unit, plain);
  const auto [double_losses, doubled] = learn(twos);
  double largest = 0;
  for (float g : plain) largest = std::max(largest, double(std::fabs(g)));
  ASSERT_GT(largest, 0.0);
  for (size_t i = 0; i < plain.size(); ++i) ASSERT_NEAR(doubled[i], 2 * plain[i], 1e-6 * largest) << "gradient " << i;
  for (size_t layer = 0; layer < plain_losses.size(); ++layer) {
    EXPECT_EQ(unit_losses[layer].value, plain_losses[layer].value);
    EXPECT_EQ(unit_losses[layer].selection, plain_losses[layer].selection);
    EXPECT_NEAR(double_losses[layer].value, 2 * plain_losses[layer].value, 1e-12);
    EXPECT_NEAR(double_losses[layer].q_value, 2 * plain_losses[layer].q_value, 1e-12);
    EXPECT_NEAR(double_losses[layer].termination, 2 * plain_losses[layer].termination, 1e-12);
    EXPECT_NEAR(double_losses[layer].selection, 2 * plain_losses[layer].selection, 1e-12);
    EXPECT_EQ(double_losses[layer].termination_probability, plain_losses[layer].termination_probability);
    EXPECT_NE(plain_losses[layer].selection, 0.0) << "layer " << layer << " had no selection term";
  }
  EXPECT_THROW(learn(std::span<const double>(ones).first(3)), std::exception);
}

// The communication cost: a hand-made layout prices masks by the ranks other than home they span,
// and a layer's costs act exactly as the same amount taken from that layer's reward.
TEST(CommunicationCost, PricesRemoteRanksAndActsAsALayerReward) {
  Rollout hand_made;
  hand_made.decisions.resize(2);
  hand_made.decisions[0].k_hat = hand_made.decisions[1].k_hat = 3;
  hand_made.decisions[0].masks = {0, 1, 2, 0, 4, 6};  // experts 0,1 on rank 0, 2,3 on 1, 4,5 on 2, 6,7 on 3
  hand_made.decisions[1].masks = {6, 7, 5, 2, 3, 1};
  const std::vector<int> owners = {0, 0, 1, 1, 2, 2, 3, 3};
  // Home rank 0: masks span {0,1}, {0,2,3} | {3,2}, {1,0} -> remote 1, 2 | 2, 1.
  EXPECT_EQ(communication_costs(hand_made, 0.5, owners, 0), (std::vector<double>{0.5, 1.0, 1.0, 0.5}));
  EXPECT_EQ(communication_costs(hand_made, 0.5, owners, 3), (std::vector<double>{1.0, 1.0, 0.5, 1.0}));
  EXPECT_TRUE(communication_costs(hand_made, 0.0, owners, 0).empty());
  EXPECT_TRUE(communication_costs(hand_made, 0.5, {}, 0).empty());

  LearnerSetup setup;
  const auto count = static_cast<size_t>(setup.batch * setup.time);
  const size_t layers = setup.controllers.size();
  std::vector<double> costs(layers * count);
  for (size_t i = 0; i < costs.size(); ++i) costs[i] = 0.01 * static_cast<double>(i % 7);
  const auto [with_costs_losses, with_costs] = setup.learn(setup.scores.reward, {}, costs);
  for (size_t layer = 0; layer < layers; ++layer) {
    // The same gradient of this layer's controller from rewards lowered by its costs.
    std::vector<double> lowered(setup.scores.reward.begin(), setup.scores.reward.end());
    for (size_t i = 0; i < count; ++i) lowered[i] -= costs[layer * count + i];
    const auto [losses, gradients] = setup.learn(lowered, {});
    EXPECT_EQ(losses[layer].value, with_costs_losses[layer].value) << "layer " << layer;
    EXPECT_EQ(losses[layer].q_value, with_costs_losses[layer].q_value) << "layer " << layer;
    EXPECT_EQ(losses[layer].termination, with_costs_losses[layer].termination) << "layer " << layer;
  }
  const auto [plain_losses, plain] = setup.learn(setup.scores.reward, {});
  EXPECT_NE(plain, with_costs);
  EXPECT_THROW(setup.learn(setup.scores.reward, {}, std::span<const double>(costs).first(3)), std::exception);
}

}  // namespace
}  // namespace temoe
