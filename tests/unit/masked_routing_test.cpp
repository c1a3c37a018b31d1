// Routing inside held masks on a real (fixture) model, and the switch bookkeeping on hand-made
// sequences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/learner/baseline_policies.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/routing_statistics.hpp"
#include "src/learner/student_rollout.hpp"
#include "src/io/npy_file.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

TEST(MaskedRouting, TheRouterNeverLeavesTheHeldMask) {
  const auto directory = kFixtures / "olmoe_f32_sharded";  // 6 experts, top-2
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const SafetensorsCheckpoint checkpoint(directory);
  const ModelWeights weights = load_model_weights(checkpoint, config, {0, config.num_experts});
  auto backend = make_backend(Device::cpu);
  LocalExperts experts(*backend, weights);
  MoeTransformer model(config, weights, *backend, experts);
  const TokenArray tokens = read_token_npy(directory / "tokens.npy");
  const int64_t batch = tokens.shape[0], time = tokens.shape[1];
  const std::vector<int64_t> ids = {0, 1};

  ControllerConfig controller_config;
  controller_config.k_hat = 3;
  controller_config.termination_bias = 0.0;  // switch often, so that many masks are tried
  ParameterSet parameters;
  auto controllers = make_controllers(parameters, config, controller_config, 1);
  ControllerPolicy controller_policy(controllers, true, 3);
  GreedyCachePolicy cache_policy(3, config.top_k, 0.9);
  RandomSwitchPolicy random_policy(3, {0.5}, 2);
  for (MaskPolicy* policy : std::initializer_list<MaskPolicy*>{&controller_policy, &cache_policy, &random_policy}) {
    const Rollout rollout = run_rollout(model, tokens.ids, batch, time, policy, ids, 0);
    int64_t switches = 0;
    for (int64_t layer = 0; layer < config.num_layers; ++layer) {
      const auto& decisions = rollout.decisions[layer];
      const auto& chosen = rollout.chosen_experts[layer];
      for (int64_t position = 0; position < batch * time; ++position) {
        const auto mask_begin = decisions.masks.begin() + position * 3;
        for (int64_t s = 0; s < config.top_k; ++s) {
          ASSERT_TRUE(std::find(mask_begin, mask_begin + 3, chosen[position * config.top_k + s]) != mask_begin + 3)
              << "layer " << layer << " position " << position;
        }
        switches += decisions.switched[position];
      }
    }
    EXPECT_GT(switches, 0);
  }
  // Unmasked, the same tokens give the teacher's own routing and logits.
  const Rollout teacher = run_rollout(model, tokens.ids, batch, time, nullptr, ids, 0);
  const Tensor reference = model.forward(tokens.ids, batch, time);
  EXPECT_EQ(teacher.logits.to_vector(), reference.to_vector());
}

TEST(RoutingStatistics, SwitchRateDurationAndEntropyOnAHandMadeSequence) {
  // One sequence of 5 tokens with k_hat = 2: masks {0,1} {0,1} {1,2} {1,2} {0,1}: 2 switches in 4
  // transitions, 3 options over 5 tokens, 2 distinct masks.
  LayerDecisions decisions;
  decisions.k_hat = 2;
  decisions.masks = {0, 1, 0, 1, 1, 2, 1, 2, 0, 1};
  const std::vector<int32_t> chosen = {0, 1, 0, 1, 1, 2, 2, 1, 0, 1};  // k = 2 used experts
  const RoutingCounts counts = count_masked_routing(decisions, chosen, 1, 5, 4, 2);
  EXPECT_DOUBLE_EQ(counts.switch_rate(), 0.5);
  EXPECT_DOUBLE_EQ(counts.mean_option_duration(), 5.0 / 3.0);
  EXPECT_EQ(counts.distinct_masks.size(), 2u);
  // Experts loaded: {0,1} -> {1,2} loads 2, {1,2} -> {0,1} loads 0: one expert per switch.
  EXPECT_DOUBLE_EQ(counts.experts_loaded, 2.0);
  EXPECT_DOUBLE_EQ(counts.experts_loaded_per_switch(), 1.0);
  // Uses: expert 0: 3, expert 1: 5, expert 2: 2 of 10 slots.
  const double entropy = -(0.3 * std::log(0.3) + 0.5 * std::log(0.5) + 0.2 * std::log(0.2));
  EXPECT_NEAR(counts.utilization_entropy(), entropy, 1e-12);
  // Plain top-k: the set {1,2} vs {2,1} is the same set: switches at t = 2 and t = 4 only.
  const RoutingCounts top_k = count_top_k_routing(chosen, 1, 5, 4, 2);
  EXPECT_DOUBLE_EQ(top_k.switch_rate(), 0.5);
}

}  // namespace
}  // namespace temoe
