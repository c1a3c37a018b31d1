#pragma once
// An unbiased uniform integer in [0, count) from a CounterRandom stream (rejection sampling, so the
// draw does not favour small values when count does not divide 2^64).
#include <cstdint>
#include <limits>

#include "src/core/counter_random.hpp"

namespace temoe::data {

inline uint64_t uniform_index(CounterRandom& random, uint64_t count) {
  // The largest multiple of count that fits, minus one: values above it are redrawn.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % count;
  uint64_t value = random.next_u64();
  while (value >= limit) value = random.next_u64();
  return value % count;
}

}  // namespace temoe::data
