#include "src/learner/plackett_luce.hpp"

#include "src/core/error.hpp"
#include "src/learner/controller_math.hpp"

namespace temoe {

namespace {

void check_count(int64_t count, size_t experts) {
  TEMOE_CHECK(count >= 1 && count <= static_cast<int64_t>(experts), "choosing " << count << " of " << experts << " experts");
}

void check_tuple(std::span<const float> logits, std::span<const int32_t> tuple) {
  std::vector<bool> taken(logits.size(), false);
  for (const int32_t expert : tuple) {
    TEMOE_CHECK(expert >= 0 && static_cast<size_t>(expert) < logits.size() && !taken[static_cast<size_t>(expert)],
                "Plackett-Luce tuple holds expert " << expert << " twice or outside [0, " << logits.size() << ")");
    taken[static_cast<size_t>(expert)] = true;
  }
}

std::vector<int32_t> top_of(const std::vector<double>& keys, int64_t count) {
  check_count(count, keys.size());
  std::vector<int32_t> top(static_cast<size_t>(count));
  controller_math::top_indices(keys.data(), static_cast<int64_t>(keys.size()), count, top.data());
  return top;
}

}  // namespace

std::vector<int32_t> sample_plackett_luce(std::span<const float> logits, int64_t count, CounterRandom& random) {
  std::vector<double> keys(logits.size());
  controller_math::gumbel_keys(logits.data(), static_cast<int64_t>(logits.size()), random, keys.data());
  return top_of(keys, count);
}

std::vector<int32_t> greedy_top(std::span<const float> logits, int64_t count) {
  return top_of(std::vector<double>(logits.begin(), logits.end()), count);
}

double plackett_luce_log_probability(std::span<const float> logits, std::span<const int32_t> tuple) {
  check_tuple(logits, tuple);
  return controller_math::plackett_luce_log_probability(logits.data(), static_cast<int64_t>(logits.size()), tuple.data(),
                                                        static_cast<int64_t>(tuple.size()));
}

void plackett_luce_gradient(std::span<const float> logits, std::span<const int32_t> tuple, std::span<float> gradient) {
  TEMOE_CHECK(gradient.size() == logits.size(), "gradient has " << gradient.size() << " entries for " << logits.size() << " logits");
  check_tuple(logits, tuple);
  std::vector<double> accumulated(logits.size());
  controller_math::plackett_luce_gradient(logits.data(), static_cast<int64_t>(logits.size()), tuple.data(),
                                          static_cast<int64_t>(tuple.size()), accumulated.data(), gradient.data());
}

}  // namespace temoe
