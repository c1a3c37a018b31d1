#pragma once
// The named streams of a training step's random draws. A draw of kind K for layer l at position t
// of global sequence g in step s is CounterRandom(seed, {s, g, l, t, K}): a pure function of what
// it decides, never of the rank or batch slot that holds the sequence (issue 4, point 7).
#include <cstdint>
#include <limits>

namespace temoe {

enum class RandomStream : uint64_t {
  termination = 1,    // d_t ~ Bernoulli(beta_t) of a controller
  selection = 2,      // Gumbel-top-k_hat of a controller's new mask
  sampled_token = 3,  // the next token of a sampled rollout, drawn from the student/teacher mixture
};

// The layer key of draws that belong to no layer (the sampled tokens).
inline constexpr uint64_t kNoLayer = std::numeric_limits<uint64_t>::max();

inline uint64_t stream_key(RandomStream stream) { return static_cast<uint64_t>(stream); }

}  // namespace temoe
