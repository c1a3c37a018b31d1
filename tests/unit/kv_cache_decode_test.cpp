// Incremental decoding with a KV cache: a prompt's prefill followed by chunks and single positions
// gives the logits of the whole-sequence forward, with and without expert masks, for both
// architectures; the decode kernels against the whole-sequence ones; the cache's checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "src/core/counter_random.hpp"
#include "src/model/key_value_cache.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe {
namespace {

using testing::tiny_model;

std::vector<int32_t> random_tokens(int64_t count, int64_t vocabulary, uint64_t seed) {
  CounterRandom random(seed, {});
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (auto& token : tokens) token = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary));
  return tokens;
}

// A fixed pattern of allowed experts for (sequence, position, layer): 5 or 6 of 8, always >= k.
std::vector<uint8_t> mask_flags(int64_t batch, int64_t first, int64_t time, int64_t layer, int64_t experts) {
  std::vector<uint8_t> flags;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = first; t < first + time; ++t) {
      for (int64_t e = 0; e < experts; ++e) flags.push_back((b * 7 + t * 3 + layer * 5 + e) % 3 != 0);
    }
  }
  return flags;
}

// Runs positions [first, first + time) of every sequence layer by layer, masked when asked.
Tensor run_steps(MoeTransformer& model, ForwardState state, bool masked) {
  const ModelConfig& config = model.config();
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    model.attention(layer, state);
    const MoeInput input = model.moe_input(layer, state);
    const auto flags = masked ? mask_flags(state.batch, state.first_position, state.time, layer, config.num_experts)
                              : std::vector<uint8_t>();
    model.moe(layer, state, input, masked ? &flags : nullptr);
  }
  return model.finish(state);
}

// max |a - b| / max |a| over all elements.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double difference = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(a[i])));
  }
  return difference / scale;
}

class KvCacheDecode : public ::testing::TestWithParam<Architecture> {};

TEST_P(KvCacheDecode, PrefillThenStepsGiveTheWholeSequenceLogits) {
  const auto built = tiny_model(GetParam(), 7);
  MoeTransformer& model = *built->model;
  const int64_t batch = 3, time = 13, vocabulary = built->config.vocab_size;
  const auto tokens = random_tokens(batch * time, vocabulary, 11);
  // Chunks of the decode: a prompt of 5, a chunk of 3, then single positions.
  std::vector<int64_t> chunks = {5, 3};
  while (std::accumulate(chunks.begin(), chunks.end(), int64_t{0}) < time) chunks.push_back(1);
  for (const bool masked : {false, true}) {
    const Tensor whole = run_steps(model, model.begin(tokens, batch, time), masked);
    ASSERT_EQ(whole.shape(), (Shape{batch, time, vocabulary}));
    KeyValueCache cache(built->config, batch, time, Device::cpu);
    std::vector<float> decoded(static_cast<size_t>(batch * time * vocabulary));
    int64_t first = 0;
    for (const int64_t chunk : chunks) {
      std::vector<int32_t> chunk_tokens;
      for (int64_t b = 0; b < batch; ++b) {
        chunk_tokens.insert(chunk_tokens.end(), tokens.begin() + b * time + first, tokens.begin() + b * time + first + chunk);
      }
      ForwardState state = model.begin(cache, chunk_tokens, chunk);
      ASSERT_EQ(state.first_position, first);
      const Tensor logits = run_steps(model, std::move(state), masked);
      ASSERT_EQ(logits.shape(), (Shape{batch, chunk, vocabulary}));
      for (int64_t b = 0; b < batch; ++b) {
        std::copy_n(logits.data() + b * chunk * vocabulary, chunk * vocabulary,
                    decoded.begin() + (b * time + first) * vocabulary);
      }
      first += chunk;
      EXPECT_EQ(cache.length(), first);
    }
    const double difference = relative_difference(whole.to_vector(), decoded);
    EXPECT_LT(difference, 1e-5) << (masked ? "masked" : "unmasked");
    std::printf("%s, %s: decoded logits within %.2e of the forward\n", to_string(GetParam()).c_str(),
                masked ? "masked" : "unmasked", difference);
  }
}

INSTANTIATE_TEST_SUITE_P(BothArchitectures, KvCacheDecode, ::testing::Values(Architecture::mixtral, Architecture::olmoe),
                         [](const auto& parameter) { return to_string(parameter.param); });

TEST(DecodeKernels, RotaryFromAPositionIsTheForwardsRotationThere) {
  auto backend = make_backend(Device::cpu);
  const int64_t batch = 2, time = 9, heads = 3, head_dim = 8, first = 4;
  CounterRandom random(3, {});
  Tensor whole({batch, time, heads, head_dim});
  for (int64_t i = 0; i < whole.numel(); ++i) whole.data()[i] = static_cast<float>(random.normal());
  Tensor tail({batch, time - first, heads, head_dim});
  for (int64_t b = 0; b < batch; ++b) {
    std::copy_n(whole.data() + (b * time + first) * heads * head_dim, (time - first) * heads * head_dim,
                tail.data() + b * (time - first) * heads * head_dim);
  }
  backend->rotary(whole, 1e4);
  backend->rotary_from(tail, 1e4, first);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < (time - first) * heads * head_dim; ++i) {
      ASSERT_EQ(tail.data()[b * (time - first) * heads * head_dim + i], whole.data()[(b * time + first) * heads * head_dim + i]);
    }
  }
}

TEST(DecodeKernels, CachedAttentionOfTheLastPositionsIsCausalAttentionThere) {
  auto backend = make_backend(Device::cpu);
  const int64_t batch = 2, time = 7, heads = 4, kv_heads = 2, head_dim = 8, capacity = 10, first = 5;
  CounterRandom random(5, {});
  const auto filled = [&](Shape shape) {
    Tensor tensor(std::move(shape));
    for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(random.normal());
    return tensor;
  };
  const Tensor q = filled({batch, time, heads, head_dim});
  const Tensor k = filled({batch, time, kv_heads, head_dim}), v = filled({batch, time, kv_heads, head_dim});
  Tensor expected({batch, time, heads, head_dim});
  backend->causal_attention(q, k, v, expected);
  // The cache holds positions 0 .. time-1 (and garbage beyond, which must not be read).
  Tensor k_cache = filled({batch, capacity, kv_heads, head_dim}), v_cache = filled({batch, capacity, kv_heads, head_dim});
  const int64_t row = kv_heads * head_dim;
  for (int64_t b = 0; b < batch; ++b) {
    std::copy_n(k.data() + b * time * row, time * row, k_cache.data() + b * capacity * row);
    std::copy_n(v.data() + b * time * row, time * row, v_cache.data() + b * capacity * row);
  }
  Tensor q_tail({batch, time - first, heads, head_dim}), out({batch, time - first, heads, head_dim});
  const int64_t q_row = heads * head_dim;
  for (int64_t b = 0; b < batch; ++b) {
    std::copy_n(q.data() + (b * time + first) * q_row, (time - first) * q_row, q_tail.data() + b * (time - first) * q_row);
  }
  backend->cached_attention(q_tail, k_cache, v_cache, first, out);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < (time - first) * q_row; ++i) {
      ASSERT_NEAR(out.data()[b * (time - first) * q_row + i], expected.data()[(b * time + first) * q_row + i], 1e-6);
    }
  }
  EXPECT_THROW(backend->cached_attention(q_tail, k_cache, v_cache, capacity - 1, out), std::exception);
}

TEST(KeyValueCache, RefusesChunksThatDoNotFitOrDoNotFollowOn) {
  const auto built = tiny_model(Architecture::mixtral, 1);
  MoeTransformer& model = *built->model;
  KeyValueCache cache(built->config, 1, 4, Device::cpu);
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  try {
    model.begin(cache, tokens, 5);
    FAIL() << "a chunk past the capacity was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("capacity of 4"), std::string::npos) << error.what();
  }
  // A chunk that ran only its first layer leaves the cache inconsistent: the next chunk is refused.
  ForwardState state = model.begin(cache, std::span<const int32_t>(tokens).first(2), 2);
  model.attention(0, state);
  try {
    model.begin(cache, std::span<const int32_t>(tokens).first(1), 1);
    FAIL() << "a cache with layers of different lengths was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("part-way"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace temoe
