// A whole-model forward on the CUDA backend against the CPU backend: the tiny OLMoE preset
// (QK-norm, softmax-then-top-k routing without renormalisation) with random weights, whole
// sequences and incremental decoding with a KV cache in device memory. Logits agree to 1e-4
// relative to their largest magnitude (issue 8's fp32 criterion); the routing decisions agree
// exactly (random weights leave no near-ties at these sizes).
//
// Not covered yet: Mixtral's top-k renormalisation and expert masks run on the host
// (MoeTransformer::moe refuses device tensors for them), so a Mixtral forward on the GPU fails
// with that message until they move into the backend.
#include <gtest/gtest.h>

#include "src/core/counter_random.hpp"
#include "src/model/key_value_cache.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe {
namespace {

using testing::close_to;
using testing::to_cuda;

Tensor upload(const Tensor& tensor) { return tensor.defined() ? to_cuda(tensor) : Tensor(); }

ModelWeights upload(const ModelWeights& host) {
  ModelWeights device;
  device.local_experts = host.local_experts;
  device.embedding = upload(host.embedding);
  device.final_norm = upload(host.final_norm);
  device.lm_head = upload(host.lm_head);
  for (const LayerWeights& layer : host.layers) {
    LayerWeights copy;
    copy.input_norm = upload(layer.input_norm);
    copy.q_proj = upload(layer.q_proj);
    copy.k_proj = upload(layer.k_proj);
    copy.v_proj = upload(layer.v_proj);
    copy.o_proj = upload(layer.o_proj);
    copy.q_norm = upload(layer.q_norm);
    copy.k_norm = upload(layer.k_norm);
    copy.post_attention_norm = upload(layer.post_attention_norm);
    copy.router = upload(layer.router);
    for (const ExpertWeights& expert : layer.experts) {
      copy.experts.push_back(ExpertWeights::without_biases(upload(expert.gate_proj), upload(expert.up_proj), upload(expert.down_proj)));
    }
    device.layers.push_back(std::move(copy));
  }
  return device;
}

// The same model as `host`, with its weights in device memory and the CUDA backend.
struct DeviceModel {
  explicit DeviceModel(const testing::InMemoryModel& host)
      : weights(upload(host.weights)),
        backend(make_backend(Device::cuda)),
        experts(*backend, weights),
        model(host.config, weights, *backend, experts) {}
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  LocalExperts experts;
  MoeTransformer model;
};

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

TEST_F(CudaModelForward, OlmoeLogitsAndRoutingMatchCpu) {
  const auto host = testing::tiny_model(Architecture::olmoe, 7);
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
