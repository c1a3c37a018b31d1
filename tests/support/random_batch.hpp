#pragma once
// Test inputs drawn from a counter-based stream: token ids and next-token targets for a rollout,
// and noise on a parameter set (moving parameters off their initialisation so that every path of
// a hand-written backward carries gradient).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/tensor/parameter_set.hpp"

namespace temoe::testing {

struct RandomTokens {
  std::vector<int32_t> tokens;   // [count] inputs
  std::vector<int32_t> targets;  // [count] next-token ids, drawn independently of the inputs
};

inline RandomTokens random_tokens(int64_t vocabulary, int64_t count, uint64_t seed) {
  CounterRandom random(seed, {});
  RandomTokens out;
  for (int64_t i = 0; i < count; ++i) {
    out.tokens.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary)));
    out.targets.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary)));
  }
  return out;
}

// Adds scale * N(0, 1) to every value of every parameter `keep` accepts (all when empty); each
// parameter's draws are keyed by its name, so adding parameters elsewhere changes none of them.
inline void add_parameter_noise(ParameterSet& parameters, double scale, uint64_t seed,
                                const std::function<bool(const std::string&)>& keep = {}) {
  for (auto& parameter : parameters.parameters()) {
    if (keep && !keep(parameter.name)) continue;
    CounterRandom noise(seed, {std::hash<std::string>{}(parameter.name)});
    for (int64_t i = 0; i < parameter.value.numel(); ++i) parameter.value.data()[i] += static_cast<float>(scale * noise.normal());
  }
}

}  // namespace temoe::testing
