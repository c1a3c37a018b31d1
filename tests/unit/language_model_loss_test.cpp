// The pretraining loss pieces with exact expectations: the load-balancing loss is `coefficient`
// for a perfectly balanced router at any depth, its per-rank shares sum to the whole batch's value,
// and its gradient is coefficient * E * f_i / (L N) for every token; the routing-locality loss's
// value by hand, its gradient by finite differences of that value, and its ranking of a consistent
// over an alternating router; the unigram entropy of data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "src/training/language_model_loss.hpp"
#include "src/training/pretraining.hpp"

namespace temoe {
namespace {

RouterStatistics statistics(int64_t layers, int64_t experts, std::vector<double> routed, std::vector<double> sums) {
  RouterStatistics result;
  result.layers = layers;
  result.experts = experts;
  result.routed = std::move(routed);
  result.probability_sums = std::move(sums);
  return result;
}

TEST(LoadBalancingLoss, IsTheCoefficientForABalancedRouter) {
  // 2 layers, 4 experts, 8 tokens, k = 2: every expert gets 4 of the 16 slots and a mean
  // probability of 1/4.
  const auto local = statistics(2, 4, std::vector<double>(8, 4.0), std::vector<double>(8, 2.0));
  const LoadBalancingLoss loss = load_balancing_loss(local.routed, local, 8, 2, 0.01);
  EXPECT_NEAR(loss.value, 0.01, 1e-15);
  for (const auto& layer : loss.probability_grads) {
    for (const float g : layer) EXPECT_FLOAT_EQ(g, static_cast<float>(0.01 * 4 * 0.25 / (2 * 8)));
  }
}

TEST(LoadBalancingLoss, RankSharesSumToTheGlobalValue) {
  // One layer, 2 experts; rank 0 has 3 tokens, rank 1 has 1; global f from all 4 tokens (k = 1).
  const auto rank0 = statistics(1, 2, {3, 0}, {2.4, 0.6});
  const auto rank1 = statistics(1, 2, {0, 1}, {0.3, 0.7});
  const std::vector<double> global = {3, 1};
  const double whole = load_balancing_loss(global, statistics(1, 2, global, {2.7, 1.3}), 4, 1, 1.0).value;
  const double shares = load_balancing_loss(global, rank0, 4, 1, 1.0).value + load_balancing_loss(global, rank1, 4, 1, 1.0).value;
  EXPECT_NEAR(shares, whole, 1e-15);
  // E * sum_i f_i P_i = 2 * (0.75 * 0.675 + 0.25 * 0.325).
  EXPECT_NEAR(whole, 2 * (0.75 * 0.675 + 0.25 * 0.325), 1e-15);
}

TEST(LoadBalancingLoss, RefusesCountsOfAnotherShape) {
  const auto local = statistics(1, 2, {1, 1}, {1, 1});
  const std::vector<double> wrong = {1, 1, 1};
  EXPECT_THROW(load_balancing_loss(wrong, local, 2, 1, 1.0), std::exception);
}

// A tape with only the router probabilities filled: one layer, [batch, time] rows of E.
ActivationTape tape_with_probabilities(int64_t batch, int64_t time, const std::vector<float>& rows, int64_t experts) {
  ActivationTape tape;
  tape.batch = batch;
  tape.time = time;
  tape.layers.resize(1);
  tape.layers[0].moe.probabilities = Tensor({batch * time, experts});
  std::copy(rows.begin(), rows.end(), tape.layers[0].moe.probabilities.data());
  return tape;
}

TEST(RoutingLocalityLoss, ValueByHand) {
  // One sequence of 4 tokens over 2 experts, windows of 2: the first window's mean is (0.8, 0.2),
  // the second's (0.5, 0.5); 2 windows in the global batch, coefficient 0.3, one layer.
  const ActivationTape tape = tape_with_probabilities(1, 4, {0.9f, 0.1f, 0.7f, 0.3f, 1.0f, 0.0f, 0.0f, 1.0f}, 2);
  const RoutingLocalityLoss loss = routing_locality_loss(tape, 2, 2, 0.3);
  const double first = -(0.8 * std::log(0.8) + 0.2 * std::log(0.2)), second = std::log(2.0);
  EXPECT_NEAR(loss.value, 0.3 * (first + second) / 2, 1e-7);
  EXPECT_NEAR(loss.window_entropy[0], (first + second) / 2, 1e-7);
  // dL/dp of the first window's tokens: -0.3 (log q_i + 1) / (1 layer * 2 windows * 2 tokens).
  EXPECT_NEAR(loss.probability_grads[0][0], -0.3 * (std::log(0.8) + 1) / 4, 1e-6);
  EXPECT_NEAR(loss.probability_grads[0][3], -0.3 * (std::log(0.2) + 1) / 4, 1e-6);
  EXPECT_FLOAT_EQ(loss.probability_grads[0][0], loss.probability_grads[0][2]);
}

TEST(RoutingLocalityLoss, GradientMatchesFiniteDifferencesOfItsValue) {
  // 2 sequences of 6 tokens, 3 experts, windows of 3; arbitrary positive rows (the loss takes
  // the probabilities as given, so they need not sum to 1 for the check).
  std::vector<float> rows;
  for (int i = 0; i < 2 * 6 * 3; ++i) rows.push_back(0.05f + 0.9f * static_cast<float>((i * 37 % 17)) / 17.0f);
  const RoutingLocalityLoss loss = routing_locality_loss(tape_with_probabilities(2, 6, rows, 3), 3, 4, 0.7);
  for (size_t i = 0; i < rows.size(); ++i) {
    const float h = 1e-3f;
    std::vector<float> up = rows, down = rows;
    up[i] += h;
    down[i] -= h;
    const double numeric = (routing_locality_loss(tape_with_probabilities(2, 6, up, 3), 3, 4, 0.7).value -
                            routing_locality_loss(tape_with_probabilities(2, 6, down, 3), 3, 4, 0.7).value) /
                           (2.0 * h);
    EXPECT_NEAR(loss.probability_grads[0][i], numeric, 2e-3 * std::fabs(numeric) + 1e-5) << "entry " << i;
  }
}

TEST(RoutingLocalityLoss, AConsistentRouterScoresBelowAnAlternatingOne) {
  // The same per-token confidence, one router keeping its expert over the window, the other
  // switching every token: only the second pays.
  const std::vector<float> steady = {0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f};
  const std::vector<float> alternating = {0.9f, 0.1f, 0.1f, 0.9f, 0.9f, 0.1f, 0.1f, 0.9f};
  const double kept = routing_locality_loss(tape_with_probabilities(1, 4, steady, 2), 4, 1, 1.0).value;
  const double switched = routing_locality_loss(tape_with_probabilities(1, 4, alternating, 2), 4, 1, 1.0).value;
  EXPECT_NEAR(kept, -(0.9 * std::log(0.9) + 0.1 * std::log(0.1)), 1e-6);
  EXPECT_NEAR(switched, std::log(2.0), 1e-6);
}

TEST(RoutingLocalityLoss, RefusesAWindowThatDoesNotDivideTheSequence) {
  const ActivationTape tape = tape_with_probabilities(1, 4, std::vector<float>(8, 0.5f), 2);
  EXPECT_THROW(routing_locality_loss(tape, 3, 1, 1.0), std::exception);
}

TEST(PretrainingOptions, RefusesALocalityWindowThatDoesNotDivideTheSequence) {
  PretrainingOptions options;
  options.sequence_length = 64;
  options.routing_locality = 0.1;
  options.locality_window = 48;
  try {
    options.validate(1);
    FAIL() << "a window of 48 for sequences of 64 was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("pretrain.locality_window = 48"), std::string::npos) << error.what();
  }
}

TEST(UnigramEntropy, OfAKnownDistribution) {
  data::TokenDataset dataset;
  dataset.vocab_size = 4;
  dataset.tokens = {0, 0, 1, 2};  // p = 1/2, 1/4, 1/4, 0
  dataset.document_offsets = {0, 4};
  EXPECT_NEAR(unigram_entropy(dataset), 0.5 * std::log(2.0) + 2 * 0.25 * std::log(4.0), 1e-12);
}

}  // namespace
}  // namespace temoe
