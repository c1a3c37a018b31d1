// The pretraining loss pieces with exact expectations: the load-balancing loss is `coefficient`
// for a perfectly balanced router at any depth, its per-rank shares sum to the whole batch's value,
// and its gradient is coefficient * E * f_i / (L N) for every token; the unigram entropy of data.
#include <gtest/gtest.h>

#include <cmath>

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

TEST(UnigramEntropy, OfAKnownDistribution) {
  data::TokenDataset dataset;
  dataset.vocab_size = 4;
  dataset.tokens = {0, 0, 1, 2};  // p = 1/2, 1/4, 1/4, 0
  dataset.document_offsets = {0, 4};
  EXPECT_NEAR(unigram_entropy(dataset), 0.5 * std::log(2.0) + 2 * 0.25 * std::log(4.0), 1e-12);
}

}  // namespace
}  // namespace temoe
