#pragma once
// A counter-based random generator: every draw is a pure function of (seed, key...), so a value
// does not depend on which rank or thread asks for it, or in which order. Built on the SplitMix64
// finaliser, which passes BigCrush as a hash of consecutive counters. Host and device compile the
// same code, so a CUDA kernel draws exactly what the CPU draws for the same keys.
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "src/core/host_device.hpp"

namespace temoe {

TEMOE_HOST_DEVICE inline uint64_t mix64(uint64_t value) {
  value += 0x9E3779B97F4A7C15ull;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ull;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBull;
  return value ^ (value >> 31);
}

class CounterRandom {
 public:
  // The stream is named by a seed and any number of integer keys (step, sequence, layer, ...).
  CounterRandom(uint64_t seed, std::initializer_list<uint64_t> keys) : CounterRandom(seed, keys.begin(), keys.size()) {}
  // The same stream from an array of keys (what device code, which has no initializer lists, uses).
  TEMOE_HOST_DEVICE CounterRandom(uint64_t seed, const uint64_t* keys, size_t count) : state_(mix64(seed)) {
    for (size_t i = 0; i < count; ++i) state_ = mix64(state_ ^ mix64(keys[i]));
  }

  TEMOE_HOST_DEVICE uint64_t next_u64() { return mix64(state_ ^ mix64(counter_++)); }
  // Uniform in (0, 1): never exactly 0, so log() and Gumbel noise are finite.
  TEMOE_HOST_DEVICE double uniform() { return (static_cast<double>(next_u64() >> 11) + 0.5) * 0x1.0p-53; }
  TEMOE_HOST_DEVICE double normal() {
    const double radius = ::sqrt(-2.0 * ::log(uniform()));
    return radius * ::cos(2.0 * 3.14159265358979323846 * uniform());
  }

 private:
  uint64_t state_;
  uint64_t counter_ = 0;
};

}  // namespace temoe
