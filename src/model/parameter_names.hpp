#pragma once
// Tensor names and shapes exactly as Hugging Face writes MixtralForCausalLM, OlmoeForCausalLM,
// Qwen2MoeForCausalLM, Qwen3MoeForCausalLM and GptOssForCausalLM.
#include <map>
#include <string>

#include "src/model/model_config.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

enum class LayerTensor {
  input_norm, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, post_attention_norm, router,
  q_bias, k_bias, v_bias, o_bias, sinks, router_bias,                        // Qwen2-MoE, gpt-oss
  shared_gate_proj, shared_up_proj, shared_down_proj, shared_expert_gate,    // Qwen2-MoE's shared expert
  dense_gate_proj, dense_up_proj, dense_down_proj,                           // Qwen's dense layers
};
enum class ExpertTensor { gate_proj, up_proj, down_proj };

// gpt-oss keeps all experts of a layer in fused tensors, dequantised (F32 / BF16) or MXFP4.
enum class ExpertStorage { dense, mxfp4 };
enum class FusedExpertTensor {
  gate_up_proj, gate_up_proj_bias, down_proj, down_proj_bias,                // dense: [E, D, 2F], [E, 2F], [E, F, D], [E, D]
  gate_up_proj_blocks, gate_up_proj_scales, down_proj_blocks, down_proj_scales,  // MXFP4 (uint8)
};
inline constexpr int64_t kMxfp4BlockSize = 32;  // values sharing one E8M0 scale; 16 bytes of FP4 pairs

std::string embedding_name();
std::string final_norm_name();
std::string lm_head_name();
std::string layer_tensor_name(const ModelConfig& config, int64_t layer, LayerTensor tensor);
std::string expert_tensor_name(const ModelConfig& config, int64_t layer, int64_t expert, ExpertTensor tensor);
std::string fused_expert_tensor_name(int64_t layer, FusedExpertTensor tensor);

Shape layer_tensor_shape(const ModelConfig& config, LayerTensor tensor);
Shape expert_tensor_shape(const ModelConfig& config, ExpertTensor tensor);
Shape fused_expert_tensor_shape(const ModelConfig& config, FusedExpertTensor tensor);

// Every tensor a checkpoint of this config holds, with its shape (gpt-oss's experts in `storage`).
std::map<std::string, Shape> expected_tensors(const ModelConfig& config, ExpertStorage storage = ExpertStorage::dense);
// Whether `tensor` is present in layer `layer` for this architecture.
bool has_layer_tensor(const ModelConfig& config, int64_t layer, LayerTensor tensor);
// gpt-oss: fused expert tensors; the others: one set of tensors per expert.
bool has_fused_experts(const ModelConfig& config);

}  // namespace temoe
