#pragma once
// Uniform random token ids for benchmarks, reproducible from a seed.
#include <cstdint>

#include "src/io/npy_file.hpp"

namespace temoe::launch {

TokenArray random_tokens(int64_t batch, int64_t time, int64_t vocab_size, uint64_t seed);

}  // namespace temoe::launch
