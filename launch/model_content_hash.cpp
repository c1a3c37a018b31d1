#include "launch/model_content_hash.hpp"

#include <cstdio>
#include <vector>

#include "src/checkpoint/content_hash.hpp"

namespace temoe::launch {

namespace {

uint64_t tensor_hash(const std::string& name, const Tensor& tensor) {
  ContentHash hash;
  hash.update(std::as_bytes(std::span<const char>(name.data(), name.size())));
  if (tensor.defined()) {
    if (tensor.device() == Device::cpu) {
      hash.update(std::as_bytes(std::span<const float>(tensor.data(), static_cast<size_t>(tensor.numel()))));
    } else {
      const std::vector<float> host = tensor.to_vector();
      hash.update(std::as_bytes(std::span<const float>(host)));
    }
  }
  return hash.digest();
}

}  // namespace

uint64_t model_content_hash(const ModelWeights& weights, ProcessGrid& grid, Communicator& world) {
  uint64_t sum = 0;  // modulo 2^64: unsigned wrap-around
  if (world.rank() == 0) {
    sum += tensor_hash("embedding", weights.embedding) + tensor_hash("final_norm", weights.final_norm) +
           tensor_hash("lm_head", weights.lm_head);
    for (size_t l = 0; l < weights.layers.size(); ++l) {
      const LayerWeights& layer = weights.layers[l];
      const std::string prefix = "layer " + std::to_string(l) + " ";
      for (const auto& [name, tensor] :
           {std::pair{"input_norm", &layer.input_norm}, std::pair{"q_proj", &layer.q_proj}, std::pair{"k_proj", &layer.k_proj},
            std::pair{"v_proj", &layer.v_proj}, std::pair{"o_proj", &layer.o_proj}, std::pair{"q_norm", &layer.q_norm},
            std::pair{"k_norm", &layer.k_norm}, std::pair{"post_attention_norm", &layer.post_attention_norm},
            std::pair{"router", &layer.router}}) {
        sum += tensor_hash(prefix + name, *tensor);
      }
      // The newer families' tensors count only where present, so that a Mixtral or OLMoE model
      // keeps the hash its earlier checkpoints recorded.
      for (const auto& [name, tensor] :
           {std::pair{"q_bias", &layer.q_bias}, std::pair{"k_bias", &layer.k_bias}, std::pair{"v_bias", &layer.v_bias},
            std::pair{"o_bias", &layer.o_bias}, std::pair{"sinks", &layer.sinks}, std::pair{"router_bias", &layer.router_bias},
            std::pair{"shared_gate_proj", &layer.shared_expert.gate_proj},
            std::pair{"shared_up_proj", &layer.shared_expert.up_proj},
            std::pair{"shared_down_proj", &layer.shared_expert.down_proj},
            std::pair{"shared_expert_gate", &layer.shared_expert_gate},
            std::pair{"dense_gate_proj", &layer.dense_mlp.gate_proj}, std::pair{"dense_up_proj", &layer.dense_mlp.up_proj},
            std::pair{"dense_down_proj", &layer.dense_mlp.down_proj}}) {
        if (tensor->defined()) sum += tensor_hash(prefix + name, *tensor);
      }
    }
  }
  if (world.rank() < grid.shape().ep_size) {  // the first expert-parallel group holds every expert once
    for (size_t l = 0; l < weights.layers.size(); ++l) {
      for (size_t i = 0; i < weights.layers[l].experts.size(); ++i) {
        const ExpertWeights& expert = weights.layers[l].experts[i];
        const std::string prefix = "layer " + std::to_string(l) + " expert " +
                                   std::to_string(weights.local_experts.id(static_cast<int64_t>(i))) + " ";
        sum += tensor_hash(prefix + "gate_proj", expert.gate_proj) + tensor_hash(prefix + "up_proj", expert.up_proj) +
               tensor_hash(prefix + "down_proj", expert.down_proj);
        for (const auto& [name, tensor] : {std::pair{"gate_bias", &expert.gate_bias}, std::pair{"up_bias", &expert.up_bias},
                                           std::pair{"down_bias", &expert.down_bias}}) {
          if (tensor->defined()) sum += tensor_hash(prefix + name, *tensor);
        }
      }
    }
  }
  // Added over ranks exactly: the four 16-bit quarters as doubles (sums of fewer than 2^37 ranks'
  // quarters are exact), carried back into 64 bits.
  double quarters[4];
  for (int q = 0; q < 4; ++q) quarters[q] = static_cast<double>((sum >> (16 * q)) & 0xffff);
  world.all_reduce_sum(std::span<double>(quarters, 4));
  uint64_t total = 0;
  for (int q = 0; q < 4; ++q) total += static_cast<uint64_t>(quarters[q]) << (16 * q);
  return total;
}

std::string hash_text(uint64_t hash) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

}  // namespace temoe::launch
