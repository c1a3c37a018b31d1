// GAE and the critic targets against values worked out by hand.
#include <gtest/gtest.h>

#include "src/learner/advantage_estimation.hpp"

namespace temoe {
namespace {

TEST(GeneralizedAdvantages, HandComputedWithAnEpisodeEnd) {
  // gamma * lambda = 0.5 * 0.5 = 0.25; the episode ends after position 1.
  const std::vector<double> deltas = {1.0, 2.0, 4.0, 8.0};
  const std::vector<uint8_t> ends = {0, 1, 0, 0};
  const auto advantages = generalized_advantages(deltas, ends, 0.5, 0.5);
  // A3 = 8; A2 = 4 + 0.25 * 8 = 6; A1 = 2 (end: nothing flows back); A0 = 1 + 0.25 * 2 = 1.5.
  EXPECT_DOUBLE_EQ(advantages[3], 8.0);
  EXPECT_DOUBLE_EQ(advantages[2], 6.0);
  EXPECT_DOUBLE_EQ(advantages[1], 2.0);
  EXPECT_DOUBLE_EQ(advantages[0], 1.5);
}

TEST(CriticTargets, DocumentEndUsesZeroNextValue) {
  // Three positions, the document ends at the last one (terminal): gamma = 0.5, lambda = 1.
  const std::vector<double> rewards = {1.0, 0.0, 2.0};
  const std::vector<double> v = {0.5, 1.0, 1.5};
  const std::vector<double> q = {0.25, 0.75, 1.0};   // Q(h_t, w_t)
  const std::vector<double> qp = {0.0, 0.5, 2.0};    // Q(h_t, w_{t-1})
  const std::vector<double> beta = {0.0, 0.5, 0.25}; // beta_t
  const std::vector<uint8_t> end = {0, 0, 1};
  const auto targets = critic_targets(rewards, v, q, qp, beta, end, 0.5, 1.0);
  // V deltas: d2 = 2 - 1.5 = 0.5; d1 = 0 + 0.5 * 1.5 - 1 = -0.25; d0 = 1 + 0.5 * 1 - 0.5 = 1.
  // A (gamma*lambda = 0.5): A2 = 0.5; A1 = -0.25 + 0.25 = 0; A0 = 1 + 0 = 1.
  EXPECT_DOUBLE_EQ(targets.v_target[2], 0.5 + 1.5);
  EXPECT_DOUBLE_EQ(targets.v_target[1], 0.0 + 1.0);
  EXPECT_DOUBLE_EQ(targets.v_target[0], 1.0 + 0.5);
  // U_2 = 0.25 * 1.5 + 0.75 * 2 = 1.875; U_1 = 0.5 * 1 + 0.5 * 0.5 = 0.75.
  // Q deltas: e2 = 2 - 1 = 1; e1 = 0 + 0.5 * 1.875 - 0.75 = 0.1875; e0 = 1 + 0.5 * 0.75 - 0.25 = 1.125.
  // A2 = 1; A1 = 0.1875 + 0.5 = 0.6875; A0 = 1.125 + 0.34375 = 1.46875.
  EXPECT_DOUBLE_EQ(targets.q_target[2], 1.0 + 1.0);
  EXPECT_DOUBLE_EQ(targets.q_target[1], 0.6875 + 0.75);
  EXPECT_DOUBLE_EQ(targets.q_target[0], 1.46875 + 0.25);
  EXPECT_EQ(targets.valid, (std::vector<uint8_t>{1, 1, 1}));
}

TEST(CriticTargets, TruncationBootstrapsFromTheLastPosition) {
  // Not a document end: the last position only bootstraps and gets no target of its own.
  const std::vector<double> rewards = {1.0, 7.0};
  const std::vector<double> v = {0.5, 2.0};
  const std::vector<double> q = {0.5, 3.0};
  const std::vector<double> qp = {0.0, 4.0};
  const std::vector<double> beta = {0.0, 0.25};
  const std::vector<uint8_t> end = {0, 0};
  const auto targets = critic_targets(rewards, v, q, qp, beta, end, 0.5, 0.5);
  // V: d0 = 1 + 0.5 * 2 - 0.5 = 1.5 -> target 2.0. Q: U_1 = 0.25 * 2 + 0.75 * 4 = 3.5,
  // e0 = 1 + 1.75 - 0.5 = 2.25 -> target 2.75. The reward 7 at t = 1 is never used.
  EXPECT_DOUBLE_EQ(targets.v_target[0], 2.0);
  EXPECT_DOUBLE_EQ(targets.q_target[0], 2.75);
  EXPECT_EQ(targets.valid, (std::vector<uint8_t>{1, 0}));
}

}  // namespace
}  // namespace temoe
