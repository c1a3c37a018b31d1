// Plackett-Luce selection against brute-force enumeration and finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "src/learner/plackett_luce.hpp"

namespace temoe {
namespace {

const std::vector<float> kLogits = {0.3f, -1.2f, 2.0f, 0.7f, -0.1f};

// Probability of an ordered tuple by its definition: sequential draws from the softmax of the rest.
double by_definition(const std::vector<int32_t>& tuple) {
  std::vector<bool> taken(kLogits.size(), false);
  double probability = 1;
  for (int32_t expert : tuple) {
    double total = 0;
    for (size_t i = 0; i < kLogits.size(); ++i) total += taken[i] ? 0 : std::exp(double(kLogits[i]));
    probability *= std::exp(double(kLogits[expert])) / total;
    taken[expert] = true;
  }
  return probability;
}

TEST(PlackettLuce, LogProbabilityMatchesEnumerationAndSumsToOne) {
  double total = 0;
  int tuples = 0;
  for (int32_t a = 0; a < 5; ++a) {
    for (int32_t b = 0; b < 5; ++b) {
      for (int32_t c = 0; c < 5; ++c) {
        if (a == b || b == c || a == c) continue;
        const std::vector<int32_t> tuple = {a, b, c};
        const double log_probability = plackett_luce_log_probability(kLogits, tuple);
        EXPECT_NEAR(std::exp(log_probability), by_definition(tuple), 1e-12);
        total += std::exp(log_probability);
        ++tuples;
      }
    }
  }
  EXPECT_EQ(tuples, 60);
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(PlackettLuce, GradientMatchesFiniteDifferences) {
  const std::vector<int32_t> tuple = {3, 0, 2};
  std::vector<float> gradient(kLogits.size());
  plackett_luce_gradient(kLogits, tuple, gradient);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    std::vector<float> up = kLogits, down = kLogits;
    up[i] += 1e-3f;
    down[i] -= 1e-3f;
    const double numeric = (plackett_luce_log_probability(up, tuple) - plackett_luce_log_probability(down, tuple)) /
                           (double(up[i]) - double(down[i]));
    EXPECT_NEAR(gradient[i], numeric, 1e-4) << "logit " << i;
  }
}

TEST(PlackettLuce, GumbelTopKSamplesTheDistribution) {
  std::map<std::vector<int32_t>, int> seen;
  const int draws = 40000;
  for (int n = 0; n < draws; ++n) {
    CounterRandom random(5, {static_cast<uint64_t>(n)});
    seen[sample_plackett_luce(kLogits, 2, random)] += 1;
  }
  for (const auto& [tuple, hits] : seen) {
    const double expected = by_definition(tuple) * draws;
    // Five standard deviations of a binomial count.
    EXPECT_NEAR(hits, expected, 5 * std::sqrt(expected) + 1) << tuple[0] << "," << tuple[1];
  }
  EXPECT_EQ(greedy_top(kLogits, 2), (std::vector<int32_t>{2, 3}));
}

}  // namespace
}  // namespace temoe
