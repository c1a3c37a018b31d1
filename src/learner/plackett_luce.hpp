#pragma once
// Choosing k_hat experts without replacement from selection logits s (Plackett-Luce): sampling by
// Gumbel-top-k, the log-probability of the ordered tuple, and its gradient with respect to s.
#include <cstdint>
#include <span>
#include <vector>

#include "src/core/counter_random.hpp"

namespace temoe {

// Ordered tuple of `count` experts: the top `count` of s_i + Gumbel noise (drawn from `random`),
// which is distributed exactly as sequential sampling without replacement from softmax(s).
std::vector<int32_t> sample_plackett_luce(std::span<const float> logits, int64_t count, CounterRandom& random);

// The `count` largest logits, descending (ties to the lower index): the greedy choice.
std::vector<int32_t> greedy_top(std::span<const float> logits, int64_t count);

// log P(tuple) = sum_j [ s_{i_j} - logsumexp_{m not among i_1..i_{j-1}} s_m ].
double plackett_luce_log_probability(std::span<const float> logits, std::span<const int32_t> tuple);

// d log P(tuple) / d s, written to `gradient` (size E).
void plackett_luce_gradient(std::span<const float> logits, std::span<const int32_t> tuple, std::span<float> gradient);

}  // namespace temoe
