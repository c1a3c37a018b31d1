#include "src/model/parameter_names.hpp"

namespace temoe {

std::string embedding_name() { return "model.embed_tokens.weight"; }
std::string final_norm_name() { return "model.norm.weight"; }
std::string lm_head_name() { return "lm_head.weight"; }

std::string layer_tensor_name(const ModelConfig& config, int64_t layer, LayerTensor tensor) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const std::string moe = config.architecture == Architecture::mixtral ? "block_sparse_moe" : "mlp";
  switch (tensor) {
    case LayerTensor::input_norm: return prefix + "input_layernorm.weight";
    case LayerTensor::q_proj: return prefix + "self_attn.q_proj.weight";
    case LayerTensor::k_proj: return prefix + "self_attn.k_proj.weight";
    case LayerTensor::v_proj: return prefix + "self_attn.v_proj.weight";
    case LayerTensor::o_proj: return prefix + "self_attn.o_proj.weight";
    case LayerTensor::q_norm: return prefix + "self_attn.q_norm.weight";
    case LayerTensor::k_norm: return prefix + "self_attn.k_norm.weight";
    case LayerTensor::post_attention_norm: return prefix + "post_attention_layernorm.weight";
    case LayerTensor::router: return prefix + moe + ".gate.weight";
  }
  return {};
}

std::string expert_tensor_name(const ModelConfig& config, int64_t layer, int64_t expert, ExpertTensor tensor) {
  const bool mixtral = config.architecture == Architecture::mixtral;
  std::string name = "model.layers." + std::to_string(layer) + (mixtral ? ".block_sparse_moe" : ".mlp") + ".experts." +
                     std::to_string(expert) + ".";
  switch (tensor) {
    case ExpertTensor::gate_proj: return name + (mixtral ? "w1" : "gate_proj") + ".weight";
    case ExpertTensor::up_proj: return name + (mixtral ? "w3" : "up_proj") + ".weight";
    case ExpertTensor::down_proj: return name + (mixtral ? "w2" : "down_proj") + ".weight";
  }
  return name;
}

Shape layer_tensor_shape(const ModelConfig& config, LayerTensor tensor) {
  const int64_t d = config.hidden_size, q_width = config.num_heads * config.head_dim,
                kv_width = config.num_kv_heads * config.head_dim;
  switch (tensor) {
    case LayerTensor::input_norm:
    case LayerTensor::post_attention_norm: return {d};
    case LayerTensor::q_proj: return {q_width, d};
    case LayerTensor::k_proj:
    case LayerTensor::v_proj: return {kv_width, d};
    case LayerTensor::o_proj: return {d, q_width};
    case LayerTensor::q_norm: return {q_width};
    case LayerTensor::k_norm: return {kv_width};
    case LayerTensor::router: return {config.num_experts, d};
  }
  return {};
}

Shape expert_tensor_shape(const ModelConfig& config, ExpertTensor tensor) {
  if (tensor == ExpertTensor::down_proj) return {config.hidden_size, config.expert_ffn_size};
  return {config.expert_ffn_size, config.hidden_size};
}

bool has_layer_tensor(const ModelConfig& config, LayerTensor tensor) {
  return config.qk_norm || (tensor != LayerTensor::q_norm && tensor != LayerTensor::k_norm);
}

std::map<std::string, Shape> expected_tensors(const ModelConfig& config) {
  std::map<std::string, Shape> tensors;
  tensors[embedding_name()] = {config.vocab_size, config.hidden_size};
  tensors[final_norm_name()] = {config.hidden_size};
  if (!config.tie_word_embeddings) tensors[lm_head_name()] = {config.vocab_size, config.hidden_size};
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (auto tensor : {LayerTensor::input_norm, LayerTensor::q_proj, LayerTensor::k_proj, LayerTensor::v_proj,
                        LayerTensor::o_proj, LayerTensor::q_norm, LayerTensor::k_norm,
                        LayerTensor::post_attention_norm, LayerTensor::router}) {
      if (has_layer_tensor(config, tensor)) tensors[layer_tensor_name(config, layer, tensor)] = layer_tensor_shape(config, tensor);
    }
    for (int64_t expert = 0; expert < config.num_experts; ++expert) {
      for (auto tensor : {ExpertTensor::gate_proj, ExpertTensor::up_proj, ExpertTensor::down_proj}) {
        tensors[expert_tensor_name(config, layer, expert, tensor)] = expert_tensor_shape(config, tensor);
      }
    }
  }
  return tensors;
}

}  // namespace temoe
