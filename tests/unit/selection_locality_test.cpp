// controller.selection_locality_bias: the logits of other ranks' experts go down by the bias, a
// large bias makes every selected mask the home rank's experts (at t = 0 and at every reload,
// sampled or greedy), and the learner scores the selections with the same biased logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/distillation_reward.hpp"
#include "src/learner/selection_locality.hpp"
#include "tests/support/in_memory_model.hpp"
#include "tests/support/single_process_world.hpp"

namespace temoe {
namespace {

TEST(SelectionLocality, TheBiasLowersOnlyTheExpertsOfOtherRanks) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 4.0f, -1.0f, 0.5f, 0.0f, 7.0f};  // 2 rows, 4 experts
  const SelectionLocality locality{{0, 0, 1, 1}, 1};
  std::vector<float> biased = logits;
  apply_selection_locality(biased, 4, locality, 2.5);
  EXPECT_EQ(biased, (std::vector<float>{-1.5f, -0.5f, 3.0f, 4.0f, -3.5f, -2.0f, 0.0f, 7.0f}));
  // Off: no bias, or nothing remote.
  for (const auto& [inactive, bias] : {std::pair{locality, 0.0}, std::pair{SelectionLocality{{1, 1, 1, 1}, 1}, 2.5},
                                        std::pair{SelectionLocality{}, 2.5}}) {
    EXPECT_FALSE(inactive.active(bias));
    std::vector<float> unchanged = logits;
    apply_selection_locality(unchanged, 4, inactive, bias);
    EXPECT_EQ(unchanged, logits);
  }
  std::vector<float> wrong_width = logits;
  EXPECT_THROW(apply_selection_locality(wrong_width, 8, locality, 1.0), std::runtime_error);
}

// A tiny model with 8 experts, the last four owned by the home rank 1.
struct LocalitySetup {
  std::unique_ptr<testing::InMemoryModel> built = testing::tiny_model(Architecture::mixtral, 8);
  int64_t batch = 2, time = 16;
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> ids = {0, 1};
  std::vector<int> owners = {0, 0, 0, 0, 1, 1, 1, 1};
  std::vector<int32_t> home_experts = {4, 5, 6, 7};

  LocalitySetup() {
    CounterRandom random(5, {});
    for (int64_t i = 0; i < batch * time; ++i) {
      tokens.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(built->config.vocab_size)));
      targets.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(built->config.vocab_size)));
    }
  }
  ControllerConfig config(double bias) const {
    ControllerConfig controller;
    controller.k_hat = 4;
    controller.termination_bias = 0.0;  // reload about half the time, so that many selections are made
    controller.selection_locality_bias = bias;
    return controller;
  }
  // Masks that are not the home rank's four experts, and reloads, over all layers and positions.
  std::pair<int64_t, int64_t> foreign_masks_and_reloads(const Rollout& rollout) const {
    int64_t foreign = 0, reloads = 0;
    for (const LayerDecisions& decisions : rollout.decisions) {
      for (int64_t position = 0; position < batch * time; ++position) {
        foreign += !std::equal(home_experts.begin(), home_experts.end(), decisions.masks.begin() + position * 4);
        reloads += decisions.terminated[static_cast<size_t>(position)];
      }
    }
    return {foreign, reloads};
  }
};

TEST(SelectionLocality, ALargeBiasHoldsTheHomeRanksExpertsAtEverySelection) {
  LocalitySetup setup;
  for (const bool sample : {true, false}) {
    ParameterSet parameters;
    auto controllers = make_controllers(parameters, setup.built->config, setup.config(50.0), 1);
    ControllerPolicy biased(controllers, sample, 3, SelectionLocality{setup.owners, 1});
    const auto [foreign, reloads] = setup.foreign_masks_and_reloads(
        run_rollout(*setup.built->model, setup.tokens, setup.batch, setup.time, &biased, setup.ids, 0));
    EXPECT_EQ(foreign, 0) << (sample ? "sampled" : "greedy");
    EXPECT_GT(reloads, 0) << (sample ? "sampled" : "greedy");
    // The same controllers without knowing where the experts live choose other masks.
    ControllerPolicy unaware(controllers, sample, 3);
    EXPECT_GT(setup.foreign_masks_and_reloads(
                      run_rollout(*setup.built->model, setup.tokens, setup.batch, setup.time, &unaware, setup.ids, 0))
                  .first,
              0);
  }
}

TEST(SelectionLocality, TheLearnerScoresSelectionsWithTheBiasedLogits) {
  // With a bias of 30 every selected tuple is the home rank's experts and the other experts carry
  // about e^-30 of the selection probability, so the selection loss gives their logits (the head's
  // bias entries) no gradient; scored without the bias, the same tuples are unlikely and push them.
  LocalitySetup setup;
  ParameterSet parameters;
  ControllerConfig learned = setup.config(30.0);
  learned.selection_coefficient = 1;  // selections drawn and scored (the default reloads greedily)
  auto controllers = make_controllers(parameters, setup.built->config, learned, 1);
  const SelectionLocality locality{setup.owners, 1};
  ControllerPolicy policy(controllers, true, 3, locality);
  const Rollout teacher = run_rollout(*setup.built->model, setup.tokens, setup.batch, setup.time, nullptr, setup.ids, 0);
  const Rollout student = run_rollout(*setup.built->model, setup.tokens, setup.batch, setup.time, &policy, setup.ids, 0);
  const TokenScores scores = score_tokens(teacher.logits, student.logits, setup.targets, RewardKind::log_ratio);
  std::vector<uint8_t> ends(static_cast<size_t>(setup.batch * setup.time), 0);
  testing::SingleProcessWorld world;
  const auto remote_gradient = [&](const SelectionLocality& scored_with) {
    parameters.zero_gradients();
    OptionCriticLearner learner(controllers, world, scored_with);
    learner.accumulate_gradients(student, scores.reward, ends, setup.batch, setup.time);
    double largest = 0;
    for (int64_t layer = 0; layer < setup.built->config.num_layers; ++layer) {
      const Parameter& head_bias = parameters.get(controller_prefix(layer) + "selection.delta_b");
      for (int64_t expert = 0; expert < 4; ++expert) largest = std::max(largest, double(std::abs(head_bias.gradient.data()[expert])));
    }
    return largest;
  };
  EXPECT_LT(remote_gradient(locality), 1e-9);
  EXPECT_GT(remote_gradient(SelectionLocality{}), 1e-4);
}

}  // namespace
}  // namespace temoe
