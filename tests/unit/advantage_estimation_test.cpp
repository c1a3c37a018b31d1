// The option-value targets (lambda-returns with the deliberation cost) against values worked out
// by hand, and against their two limits: lambda = 1 is the Monte-Carlo return of r_t - eta d_{t+1},
// lambda = 0 the one-step option-critic target r_t + gamma U_{t+1}.
#include <gtest/gtest.h>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/learner/advantage_estimation.hpp"

namespace temoe {
namespace {

struct Sequence {
  std::vector<double> rewards, q_previous, beta, reload_value;
  std::vector<uint8_t> terminated, end;
  OptionTrajectory view() const { return {rewards, q_previous, beta, reload_value, terminated, end}; }
};

TEST(OptionValueTargets, HandComputedThreeTokensEndingTheDocument) {
  // gamma = 0.5, lambda = 0.5, eta = 0.1; the policy terminated at t = 1.
  const Sequence s{{1.0, 0.0, 2.0}, {9.0, 0.5, 2.0}, {9.0, 0.5, 0.25}, {9.0, 1.0, 1.5}, {0, 1, 0}, {0, 0, 1}};
  const auto targets = option_value_targets(s.view(), 0.5, 0.5, 0.1);
  // t = 2 ends the document: G2 = r2 = 2.
  // t = 1: U2 = 0.25 (1.5 - 0.1) + 0.75 * 2 = 1.85; the path taken did not terminate at 2:
  //        G1 = 0 + 0.5 * 1.85 + 0.25 (2 - 1.85) = 0.9625.
  // t = 0: U1 = 0.5 (1.0 - 0.1) + 0.5 * 0.5 = 0.7; the path paid eta at t = 1:
  //        G0 = 1 + 0.5 * 0.7 + 0.25 (0.9625 - 0.1 - 0.7) = 1.390625.
  // (Entries 0 of q_previous, beta and reload_value are never read: the 9s change nothing.)
  EXPECT_NEAR(targets.q_target[2], 2.0, 1e-12);
  EXPECT_NEAR(targets.q_target[1], 0.9625, 1e-12);
  EXPECT_NEAR(targets.q_target[0], 1.390625, 1e-12);
  EXPECT_EQ(targets.valid, (std::vector<uint8_t>{1, 1, 1}));
}

TEST(OptionValueTargets, TruncationBootstrapsFromTheLastPosition) {
  // Not a document end: the last position only bootstraps and gets no target of its own.
  const Sequence s{{1.0, 7.0}, {0.0, 4.0}, {0.0, 0.25}, {0.0, 2.0}, {0, 1}, {0, 0}};
  const auto targets = option_value_targets(s.view(), 0.5, 0.5, 0.5);
  // G0 = 1 + 0.5 (0.25 (2 - 0.5) + 0.75 * 4) = 2.6875: the expected bootstrap only, no path
  // correction (no G1), and neither the reward 7 nor the termination at t = 1 is used.
  EXPECT_DOUBLE_EQ(targets.q_target[0], 2.6875);
  EXPECT_EQ(targets.valid, (std::vector<uint8_t>{1, 0}));
}

TEST(OptionValueTargets, NothingFlowsBackAcrossADocumentEnd) {
  Sequence s{{1.0, 2.0, 4.0, 8.0}, {0, 3, 3, 3}, {0, 0.5, 0.5, 0.5}, {0, 1, 1, 1}, {0, 1, 1, 1}, {0, 1, 0, 1}};
  const auto before = option_value_targets(s.view(), 0.9, 0.9, 0.2);
  s.rewards[2] = 100.0;
  s.terminated[2] = 0;
  const auto after = option_value_targets(s.view(), 0.9, 0.9, 0.2);
  EXPECT_DOUBLE_EQ(after.q_target[0], before.q_target[0]);
  EXPECT_DOUBLE_EQ(after.q_target[1], 2.0);  // the document ends at t = 1
  EXPECT_NE(after.q_target[2], before.q_target[2]);
}

Sequence random_sequence(int64_t length, uint64_t seed) {
  CounterRandom random(seed, {});
  Sequence s;
  for (int64_t t = 0; t < length; ++t) {
    s.rewards.push_back(random.normal());
    s.q_previous.push_back(random.normal());
    s.beta.push_back(random.uniform());
    s.reload_value.push_back(random.normal());
    s.terminated.push_back(t > 0 && random.uniform() < 0.3);
    s.end.push_back(t == length - 1);
  }
  return s;
}

TEST(OptionValueTargets, LambdaOneIsTheMonteCarloReturnWithTheSwitchingCostsPaid) {
  const double gamma = 0.9, eta = 0.3;
  const Sequence s = random_sequence(9, 5);
  const auto targets = option_value_targets(s.view(), gamma, 1.0, eta);
  for (size_t t = 0; t < s.rewards.size(); ++t) {
    double expected = 0, discount = 1;
    for (size_t l = t; l < s.rewards.size(); ++l) {
      expected += discount * s.rewards[l];
      if (l + 1 < s.rewards.size()) expected -= discount * gamma * eta * s.terminated[l + 1];
      discount *= gamma;
    }
    EXPECT_NEAR(targets.q_target[t], expected, 1e-12) << "t = " << t;
  }
}

TEST(OptionValueTargets, LambdaZeroIsTheOneStepOptionCriticTarget) {
  const double gamma = 0.9, eta = 0.3;
  const Sequence s = random_sequence(9, 6);
  const auto targets = option_value_targets(s.view(), gamma, 0.0, eta);
  for (size_t t = 0; t + 1 < s.rewards.size(); ++t) {
    const double u = s.beta[t + 1] * (s.reload_value[t + 1] - eta) + (1 - s.beta[t + 1]) * s.q_previous[t + 1];
    EXPECT_NEAR(targets.q_target[t], s.rewards[t] + gamma * u, 1e-12) << "t = " << t;
  }
}

TEST(OptionValueTargets, InputsOfDifferentLengthsAreRefused) {
  Sequence s = random_sequence(4, 7);
  s.beta.pop_back();
  EXPECT_THROW(option_value_targets(s.view(), 0.9, 0.9, 0.1), Error);
}

}  // namespace
}  // namespace temoe
