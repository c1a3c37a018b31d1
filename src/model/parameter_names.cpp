#include "src/model/parameter_names.hpp"

namespace temoe {

std::string embedding_name() { return "model.embed_tokens.weight"; }
std::string final_norm_name() { return "model.norm.weight"; }
std::string lm_head_name() { return "lm_head.weight"; }

namespace {

std::string moe_module(const ModelConfig& config) {
  return config.architecture == Architecture::mixtral ? "block_sparse_moe" : "mlp";
}

}  // namespace

std::string layer_tensor_name(const ModelConfig& config, int64_t layer, LayerTensor tensor) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  const std::string moe = prefix + moe_module(config) + ".";
  const bool gpt_oss = config.architecture == Architecture::gpt_oss;
  switch (tensor) {
    case LayerTensor::input_norm: return prefix + "input_layernorm.weight";
    case LayerTensor::q_proj: return prefix + "self_attn.q_proj.weight";
    case LayerTensor::k_proj: return prefix + "self_attn.k_proj.weight";
    case LayerTensor::v_proj: return prefix + "self_attn.v_proj.weight";
    case LayerTensor::o_proj: return prefix + "self_attn.o_proj.weight";
    case LayerTensor::q_norm: return prefix + "self_attn.q_norm.weight";
    case LayerTensor::k_norm: return prefix + "self_attn.k_norm.weight";
    case LayerTensor::post_attention_norm: return prefix + "post_attention_layernorm.weight";
    case LayerTensor::router: return moe + (gpt_oss ? "router.weight" : "gate.weight");
    case LayerTensor::q_bias: return prefix + "self_attn.q_proj.bias";
    case LayerTensor::k_bias: return prefix + "self_attn.k_proj.bias";
    case LayerTensor::v_bias: return prefix + "self_attn.v_proj.bias";
    case LayerTensor::o_bias: return prefix + "self_attn.o_proj.bias";
    case LayerTensor::sinks: return prefix + "self_attn.sinks";
    case LayerTensor::router_bias: return moe + "router.bias";
    case LayerTensor::shared_gate_proj: return moe + "shared_expert.gate_proj.weight";
    case LayerTensor::shared_up_proj: return moe + "shared_expert.up_proj.weight";
    case LayerTensor::shared_down_proj: return moe + "shared_expert.down_proj.weight";
    case LayerTensor::shared_expert_gate: return moe + "shared_expert_gate.weight";
    case LayerTensor::dense_gate_proj: return moe + "gate_proj.weight";
    case LayerTensor::dense_up_proj: return moe + "up_proj.weight";
    case LayerTensor::dense_down_proj: return moe + "down_proj.weight";
  }
  return {};
}

std::string expert_tensor_name(const ModelConfig& config, int64_t layer, int64_t expert, ExpertTensor tensor) {
  const bool mixtral = config.architecture == Architecture::mixtral;
  std::string name =
      "model.layers." + std::to_string(layer) + "." + moe_module(config) + ".experts." + std::to_string(expert) + ".";
  switch (tensor) {
    case ExpertTensor::gate_proj: return name + (mixtral ? "w1" : "gate_proj") + ".weight";
    case ExpertTensor::up_proj: return name + (mixtral ? "w3" : "up_proj") + ".weight";
    case ExpertTensor::down_proj: return name + (mixtral ? "w2" : "down_proj") + ".weight";
  }
  return name;
}

std::string fused_expert_tensor_name(int64_t layer, FusedExpertTensor tensor) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.experts.";
  switch (tensor) {
    case FusedExpertTensor::gate_up_proj: return prefix + "gate_up_proj";
    case FusedExpertTensor::gate_up_proj_bias: return prefix + "gate_up_proj_bias";
    case FusedExpertTensor::down_proj: return prefix + "down_proj";
    case FusedExpertTensor::down_proj_bias: return prefix + "down_proj_bias";
    case FusedExpertTensor::gate_up_proj_blocks: return prefix + "gate_up_proj_blocks";
    case FusedExpertTensor::gate_up_proj_scales: return prefix + "gate_up_proj_scales";
    case FusedExpertTensor::down_proj_blocks: return prefix + "down_proj_blocks";
    case FusedExpertTensor::down_proj_scales: return prefix + "down_proj_scales";
  }
  return prefix;
}

Shape layer_tensor_shape(const ModelConfig& config, LayerTensor tensor) {
  const int64_t d = config.hidden_size, q_width = config.num_heads * config.head_dim,
                kv_width = config.num_kv_heads * config.head_dim;
  const bool per_head = config.qk_norm_per_head;
  switch (tensor) {
    case LayerTensor::input_norm:
    case LayerTensor::post_attention_norm:
    case LayerTensor::o_bias: return {d};
    case LayerTensor::q_proj: return {q_width, d};
    case LayerTensor::k_proj:
    case LayerTensor::v_proj: return {kv_width, d};
    case LayerTensor::o_proj: return {d, q_width};
    case LayerTensor::q_norm: return {per_head ? config.head_dim : q_width};
    case LayerTensor::k_norm: return {per_head ? config.head_dim : kv_width};
    case LayerTensor::router: return {config.num_experts, d};
    case LayerTensor::q_bias: return {q_width};
    case LayerTensor::k_bias:
    case LayerTensor::v_bias: return {kv_width};
    case LayerTensor::sinks: return {config.num_heads};
    case LayerTensor::router_bias: return {config.num_experts};
    case LayerTensor::shared_gate_proj:
    case LayerTensor::shared_up_proj: return {config.shared_expert_ffn_size, d};
    case LayerTensor::shared_down_proj: return {d, config.shared_expert_ffn_size};
    case LayerTensor::shared_expert_gate: return {1, d};
    case LayerTensor::dense_gate_proj:
    case LayerTensor::dense_up_proj: return {config.dense_ffn_size, d};
    case LayerTensor::dense_down_proj: return {d, config.dense_ffn_size};
  }
  return {};
}

Shape expert_tensor_shape(const ModelConfig& config, ExpertTensor tensor) {
  if (tensor == ExpertTensor::down_proj) return {config.hidden_size, config.expert_ffn_size};
  return {config.expert_ffn_size, config.hidden_size};
}

Shape fused_expert_tensor_shape(const ModelConfig& config, FusedExpertTensor tensor) {
  const int64_t e = config.num_experts, d = config.hidden_size, f = config.expert_ffn_size;
  const int64_t bytes_per_block = kMxfp4BlockSize / 2;
  switch (tensor) {
    case FusedExpertTensor::gate_up_proj: return {e, d, 2 * f};
    case FusedExpertTensor::gate_up_proj_bias: return {e, 2 * f};
    case FusedExpertTensor::down_proj: return {e, f, d};
    case FusedExpertTensor::down_proj_bias: return {e, d};
    // MXFP4 stores each matrix as [out_features, in_features]: rows of blocks of 32 input values.
    case FusedExpertTensor::gate_up_proj_blocks: return {e, 2 * f, d / kMxfp4BlockSize, bytes_per_block};
    case FusedExpertTensor::gate_up_proj_scales: return {e, 2 * f, d / kMxfp4BlockSize};
    case FusedExpertTensor::down_proj_blocks: return {e, d, f / kMxfp4BlockSize, bytes_per_block};
    case FusedExpertTensor::down_proj_scales: return {e, d, f / kMxfp4BlockSize};
  }
  return {};
}

bool has_fused_experts(const ModelConfig& config) { return config.architecture == Architecture::gpt_oss; }

bool has_layer_tensor(const ModelConfig& config, int64_t layer, LayerTensor tensor) {
  const bool moe = config.is_moe_layer(layer);
  switch (tensor) {
    case LayerTensor::q_norm:
    case LayerTensor::k_norm: return config.qk_norm;
    case LayerTensor::q_bias:
    case LayerTensor::k_bias:
    case LayerTensor::v_bias: return config.qkv_bias;
    case LayerTensor::o_bias: return config.output_bias;
    case LayerTensor::sinks: return config.attention_sinks;
    case LayerTensor::router: return moe;
    case LayerTensor::router_bias: return moe && config.router_bias;
    case LayerTensor::shared_gate_proj:
    case LayerTensor::shared_up_proj:
    case LayerTensor::shared_down_proj:
    case LayerTensor::shared_expert_gate: return moe && config.shared_expert_ffn_size > 0;
    case LayerTensor::dense_gate_proj:
    case LayerTensor::dense_up_proj:
    case LayerTensor::dense_down_proj: return !moe;
    default: return true;
  }
}

std::map<std::string, Shape> expected_tensors(const ModelConfig& config, ExpertStorage storage) {
  std::map<std::string, Shape> tensors;
  tensors[embedding_name()] = {config.vocab_size, config.hidden_size};
  tensors[final_norm_name()] = {config.hidden_size};
  if (!config.tie_word_embeddings) tensors[lm_head_name()] = {config.vocab_size, config.hidden_size};
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (int tensor = 0; tensor <= static_cast<int>(LayerTensor::dense_down_proj); ++tensor) {
      const auto which = static_cast<LayerTensor>(tensor);
      if (has_layer_tensor(config, layer, which)) tensors[layer_tensor_name(config, layer, which)] = layer_tensor_shape(config, which);
    }
    if (!config.is_moe_layer(layer)) continue;
    if (has_fused_experts(config)) {
      const bool mxfp4 = storage == ExpertStorage::mxfp4;
      for (const auto tensor : {mxfp4 ? FusedExpertTensor::gate_up_proj_blocks : FusedExpertTensor::gate_up_proj,
                                FusedExpertTensor::gate_up_proj_bias,
                                mxfp4 ? FusedExpertTensor::down_proj_blocks : FusedExpertTensor::down_proj,
                                FusedExpertTensor::down_proj_bias}) {
        tensors[fused_expert_tensor_name(layer, tensor)] = fused_expert_tensor_shape(config, tensor);
      }
      if (mxfp4) {
        for (const auto tensor : {FusedExpertTensor::gate_up_proj_scales, FusedExpertTensor::down_proj_scales}) {
          tensors[fused_expert_tensor_name(layer, tensor)] = fused_expert_tensor_shape(config, tensor);
        }
      }
      continue;
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
