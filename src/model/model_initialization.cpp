#include "src/model/model_initialization.hpp"

#include <cmath>
#include <string>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/model/parameter_names.hpp"

namespace temoe {

namespace {

// FNV-1a: names the random stream of a tensor.
uint64_t name_key(const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : name) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

Tensor normal_tensor(const std::string& name, const Shape& shape, double deviation, uint64_t seed) {
  Tensor tensor(shape);
  CounterRandom random(seed, {name_key(name)});
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(deviation * random.normal());
  return tensor;
}

Tensor ones(const Shape& shape) {
  Tensor tensor(shape);
  tensor.fill(1.0f);
  return tensor;
}

}  // namespace

ModelWeights initialize_model_weights(const ModelConfig& config, ExpertSet local_experts,
                                      const InitializationOptions& options) {
  config.validate("initialize_model_weights");
  require_pretrainable(config, "initialize_model_weights");
  TEMOE_CHECK(local_experts.count() == 0 || local_experts.ids().back() < config.num_experts,
              "initialize_model_weights: experts " << local_experts.describe() << " of " << config.num_experts);
  TEMOE_CHECK(options.standard_deviation > 0.0,
              "initialize_model_weights: standard deviation " << options.standard_deviation << " must be positive");
  const double deviation = options.standard_deviation;
  const double residual_deviation = deviation / std::sqrt(2.0 * static_cast<double>(config.num_layers));
  const uint64_t seed = options.seed;
  ModelWeights weights;
  weights.local_experts = local_experts;
  weights.embedding = normal_tensor(embedding_name(), {config.vocab_size, config.hidden_size}, deviation, seed);
  weights.final_norm = ones({config.hidden_size});
  weights.lm_head = config.tie_word_embeddings
                        ? weights.embedding
                        : normal_tensor(lm_head_name(), {config.vocab_size, config.hidden_size}, deviation, seed);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    LayerWeights w;
    const auto matrix = [&](LayerTensor tensor, double scale) {
      return normal_tensor(layer_tensor_name(config, layer, tensor), layer_tensor_shape(config, tensor), scale, seed);
    };
    w.input_norm = ones(layer_tensor_shape(config, LayerTensor::input_norm));
    w.q_proj = matrix(LayerTensor::q_proj, deviation);
    w.k_proj = matrix(LayerTensor::k_proj, deviation);
    w.v_proj = matrix(LayerTensor::v_proj, deviation);
    w.o_proj = matrix(LayerTensor::o_proj, residual_deviation);
    if (config.qk_norm) {
      w.q_norm = ones(layer_tensor_shape(config, LayerTensor::q_norm));
      w.k_norm = ones(layer_tensor_shape(config, LayerTensor::k_norm));
    }
    w.post_attention_norm = ones(layer_tensor_shape(config, LayerTensor::post_attention_norm));
    w.router = matrix(LayerTensor::router, deviation);
    for (const int64_t expert : local_experts.ids()) {
      const auto expert_matrix = [&](ExpertTensor tensor, double scale) {
        return normal_tensor(expert_tensor_name(config, layer, expert, tensor), expert_tensor_shape(config, tensor), scale,
                             seed);
      };
      w.experts.push_back(ExpertWeights::without_biases(expert_matrix(ExpertTensor::gate_proj, deviation),
                                                        expert_matrix(ExpertTensor::up_proj, deviation),
                                                        expert_matrix(ExpertTensor::down_proj, residual_deviation)));
    }
    weights.layers.push_back(std::move(w));
  }
  return weights;
}

}  // namespace temoe
