#pragma once
// Decoding with a KV cache the way the reference tests check it: a prefill of `prefill` positions,
// then one position per step. Every rank of an expert-parallel model must call it for the same
// number of steps, with however many sequences it holds (none included).
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/key_value_cache.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe::testing {

// tokens: rows * time ids, row-major. Returns the logits [rows, time, V], row-major.
inline std::vector<float> decode_with_cache(MoeTransformer& model, const ModelConfig& config,
                                            std::span<const int32_t> tokens, int64_t rows, int64_t time,
                                            int64_t prefill = 3) {
  const int64_t vocabulary = config.vocab_size;
  KeyValueCache cache(config, rows, time, Device::cpu);
  std::vector<float> decoded(static_cast<size_t>(rows * time * vocabulary));
  for (int64_t first = 0; first < time;) {
    const int64_t chunk = std::min(first == 0 ? prefill : 1, time - first);
    std::vector<int32_t> chunk_tokens;
    for (int64_t b = 0; b < rows; ++b) {
      chunk_tokens.insert(chunk_tokens.end(), tokens.begin() + b * time + first, tokens.begin() + b * time + first + chunk);
    }
    ForwardState state = model.begin(cache, chunk_tokens, chunk);
    for (int64_t layer = 0; layer < config.num_layers; ++layer) {
      model.attention(layer, state);
      model.moe(layer, state, model.moe_input(layer, state));
    }
    const Tensor logits = model.finish(state);
    for (int64_t b = 0; b < rows; ++b) {
      std::copy_n(logits.data() + b * chunk * vocabulary, chunk * vocabulary, decoded.begin() + (b * time + first) * vocabulary);
    }
    first += chunk;
  }
  return decoded;
}

}  // namespace temoe::testing
