#include "src/learner/plackett_luce.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "src/core/error.hpp"

namespace temoe {

namespace {

std::vector<int32_t> top_indices(std::span<const double> keys, int64_t count) {
  TEMOE_CHECK(count >= 1 && count <= static_cast<int64_t>(keys.size()),
              "choosing " << count << " of " << keys.size() << " experts");
  std::vector<int32_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [&](int32_t a, int32_t b) { return keys[a] > keys[b] || (keys[a] == keys[b] && a < b); });
  order.resize(static_cast<size_t>(count));
  return order;
}

// log-sum-exp over the experts not yet taken, in double.
double remaining_log_sum_exp(std::span<const float> logits, const std::vector<bool>& taken) {
  double maximum = -INFINITY;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!taken[i]) maximum = std::max(maximum, static_cast<double>(logits[i]));
  }
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!taken[i]) total += std::exp(static_cast<double>(logits[i]) - maximum);
  }
  return maximum + std::log(total);
}

}  // namespace

std::vector<int32_t> sample_plackett_luce(std::span<const float> logits, int64_t count, CounterRandom& random) {
  std::vector<double> keys(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) keys[i] = static_cast<double>(logits[i]) - std::log(-std::log(random.uniform()));
  return top_indices(keys, count);
}

std::vector<int32_t> greedy_top(std::span<const float> logits, int64_t count) {
  std::vector<double> keys(logits.begin(), logits.end());
  return top_indices(keys, count);
}

double plackett_luce_log_probability(std::span<const float> logits, std::span<const int32_t> tuple) {
  std::vector<bool> taken(logits.size(), false);
  double total = 0;
  for (const int32_t expert : tuple) {
    TEMOE_CHECK(expert >= 0 && static_cast<size_t>(expert) < logits.size() && !taken[static_cast<size_t>(expert)],
                "Plackett-Luce tuple holds expert " << expert << " twice or outside [0, " << logits.size() << ")");
    total += static_cast<double>(logits[static_cast<size_t>(expert)]) - remaining_log_sum_exp(logits, taken);
    taken[static_cast<size_t>(expert)] = true;
  }
  return total;
}

void plackett_luce_gradient(std::span<const float> logits, std::span<const int32_t> tuple, std::span<float> gradient) {
  TEMOE_CHECK(gradient.size() == logits.size(), "gradient has " << gradient.size() << " entries for " << logits.size() << " logits");
  std::vector<bool> taken(logits.size(), false);
  std::vector<double> accumulated(logits.size(), 0.0);
  for (const int32_t expert : tuple) {
    const double normaliser = remaining_log_sum_exp(logits, taken);
    for (size_t i = 0; i < logits.size(); ++i) {
      if (!taken[i]) accumulated[i] -= std::exp(static_cast<double>(logits[i]) - normaliser);
    }
    accumulated[static_cast<size_t>(expert)] += 1.0;
    taken[static_cast<size_t>(expert)] = true;
  }
  for (size_t i = 0; i < logits.size(); ++i) gradient[i] = static_cast<float>(accumulated[i]);
}

}  // namespace temoe
