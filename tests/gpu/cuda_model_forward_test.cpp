// A whole-model forward on the CUDA backend against the CPU backend: the tiny OLMoE preset
// (QK-norm, softmax-then-top-k routing without renormalisation) and the tiny Mixtral preset
// (top-k renormalisation) with random weights, whole sequences and incremental decoding with a KV
// cache in device memory, and routing inside held masks for Mixtral, OLMoE and Qwen3-MoE. Logits
// agree to 1e-4 relative to their largest magnitude (issue 8's fp32 criterion); the routing
// decisions agree exactly (random weights leave no near-ties at these sizes). Qwen2-MoE (biases,
// the shared expert) and gpt-oss (YaRN, sliding windows, sinks) need kernels the CUDA backend
// does not have yet; it refuses them by name.
#include <gtest/gtest.h>

#include "src/core/counter_random.hpp"
#include "src/model/key_value_cache.hpp"
#include "tests/gpu/device_model.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe {
namespace {

using testing::close_to;

using testing::DeviceModel;

std::vector<int32_t> random_tokens(int64_t count, int64_t vocabulary, uint64_t seed) {
  CounterRandom random(seed, {});
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (auto& token : tokens) token = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary));
  return tokens;
}

class CudaModelForward : public ::testing::Test {
 protected:
  void SetUp() override { TEMOE_SKIP_WITHOUT_CUDA(); }
};

void expect_forward_matches_cpu(Architecture architecture, uint64_t seed) {
  const auto host = testing::tiny_model(architecture, seed);
  DeviceModel device(*host);
  const int64_t batch = 2, time = 9;
  const auto tokens = random_tokens(batch * time, host->config.vocab_size, 11);
  ForwardRecord cpu_record, gpu_record;
  const Tensor expected = host->model->forward(tokens, batch, time, &cpu_record);
  const Tensor actual = device.model.forward(tokens, batch, time, &gpu_record);
  EXPECT_EQ(actual.device(), Device::cuda);
  EXPECT_TRUE(close_to(actual, expected, 1e-4));
  ASSERT_EQ(gpu_record.layers.size(), cpu_record.layers.size());
  for (size_t layer = 0; layer < cpu_record.layers.size(); ++layer) {
    EXPECT_EQ(gpu_record.layers[layer].chosen_experts, cpu_record.layers[layer].chosen_experts) << "layer " << layer;
    EXPECT_TRUE(close_to(gpu_record.layers[layer].gate_weights, cpu_record.layers[layer].gate_weights, 1e-4))
        << "layer " << layer;
  }
}

TEST_F(CudaModelForward, OlmoeLogitsAndRoutingMatchCpu) { expect_forward_matches_cpu(Architecture::olmoe, 7); }

TEST_F(CudaModelForward, MixtralLogitsAndRenormalisedGatesMatchCpu) { expect_forward_matches_cpu(Architecture::mixtral, 9); }

// Every token holds k_hat = E / 2 experts, a different set per token; both backends route inside
// the same masks, layer by layer as the rollouts do.
void expect_masked_forward_matches_cpu(Architecture architecture, uint64_t seed) {
  const auto host = testing::tiny_model(architecture, seed);
  DeviceModel device(*host);
  const int64_t batch = 2, time = 7, count = batch * time;
  const int64_t experts = host->config.num_experts, k_hat = experts / 2;
  const auto tokens = random_tokens(count, host->config.vocab_size, seed + 100);
  std::vector<uint8_t> flags(static_cast<size_t>(count * experts), 0);
  for (int64_t token = 0; token < count; ++token) {
    for (int64_t j = 0; j < k_hat; ++j) flags[static_cast<size_t>(token * experts + (token + 2 * j) % experts)] = 1;
  }
  ForwardState cpu_state = host->model->begin(tokens, batch, time), gpu_state = device.model.begin(tokens, batch, time);
  for (int64_t layer = 0; layer < host->config.num_layers; ++layer) {
    host->model->attention(layer, cpu_state);
    device.model.attention(layer, gpu_state);
    const MoeInput cpu_input = host->model->moe_input(layer, cpu_state), gpu_input = device.model.moe_input(layer, gpu_state);
    RouterRecord cpu_record, gpu_record;
    host->model->moe(layer, cpu_state, cpu_input, &flags, &cpu_record);
    device.model.moe(layer, gpu_state, gpu_input, &flags, &gpu_record);
    EXPECT_EQ(gpu_record.chosen_experts, cpu_record.chosen_experts) << "layer " << layer;
    EXPECT_TRUE(close_to(gpu_record.gate_weights, cpu_record.gate_weights, 1e-5)) << "layer " << layer;
    for (size_t i = 0; i < cpu_record.chosen_experts.size(); ++i) {
      const size_t token = i / static_cast<size_t>(host->config.top_k);
      ASSERT_TRUE(flags[token * static_cast<size_t>(experts) + static_cast<size_t>(gpu_record.chosen_experts[i])])
          << "layer " << layer << ": token " << token << " routed outside its mask";
    }
  }
  EXPECT_TRUE(close_to(device.model.finish(gpu_state), host->model->finish(cpu_state), 1e-4));
}

TEST_F(CudaModelForward, MixtralInsideHeldMasksMatchesCpu) { expect_masked_forward_matches_cpu(Architecture::mixtral, 13); }
TEST_F(CudaModelForward, OlmoeInsideHeldMasksMatchesCpu) { expect_masked_forward_matches_cpu(Architecture::olmoe, 14); }
TEST_F(CudaModelForward, Qwen3InsideHeldMasksMatchesCpu) { expect_masked_forward_matches_cpu(Architecture::qwen3_moe, 15); }

TEST_F(CudaModelForward, OlmoeDecodingWithADeviceCacheMatchesTheCpuForward) {
  const auto host = testing::tiny_model(Architecture::olmoe, 8);
  DeviceModel device(*host);
  const int64_t batch = 2, time = 8, prompt = 5;
  const auto tokens = random_tokens(batch * time, host->config.vocab_size, 12);
  const std::vector<float> expected = host->model->forward(tokens, batch, time).to_vector();
  const int64_t vocabulary = host->config.vocab_size;

  KeyValueCache cache(host->config, batch, time, Device::cuda);
  std::vector<float> decoded(expected.size());
  // A prefill of `prompt` positions, then one position at a time.
  for (int64_t first = 0; first < time;) {
    const int64_t chunk = first == 0 ? prompt : 1;
    std::vector<int32_t> chunk_tokens;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = first; t < first + chunk; ++t) chunk_tokens.push_back(tokens[static_cast<size_t>(b * time + t)]);
    }
    ForwardState state = device.model.begin(cache, chunk_tokens, chunk);
    for (int64_t layer = 0; layer < host->config.num_layers; ++layer) {
      device.model.attention(layer, state);
      const MoeInput input = device.model.moe_input(layer, state);
      device.model.moe(layer, state, input);
    }
    const std::vector<float> logits = device.model.finish(state).to_vector();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < chunk; ++t) {
        std::copy_n(logits.begin() + (b * chunk + t) * vocabulary, vocabulary,
                    decoded.begin() + (b * time + first + t) * vocabulary);
      }
    }
    first += chunk;
  }
  const Shape shape{batch, time, vocabulary};
  EXPECT_TRUE(close_to(Tensor::from_vector(shape, decoded), Tensor::from_vector(shape, expected), 1e-4));
}

}  // namespace
}  // namespace temoe
