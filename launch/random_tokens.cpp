#include "launch/random_tokens.hpp"

#include "src/core/counter_random.hpp"

namespace temoe::launch {

TokenArray random_tokens(int64_t batch, int64_t time, int64_t vocab_size, uint64_t seed) {
  TokenArray tokens{{batch, time}, std::vector<int32_t>(static_cast<size_t>(batch * time))};
  CounterRandom random(seed, {});
  for (auto& id : tokens.ids) id = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocab_size));
  return tokens;
}

}  // namespace temoe::launch
