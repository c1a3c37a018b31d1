#pragma once
// Tensor names and shapes exactly as Hugging Face writes MixtralForCausalLM and OlmoeForCausalLM.
#include <map>
#include <string>

#include "src/model/model_config.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

enum class LayerTensor { input_norm, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, post_attention_norm, router };
enum class ExpertTensor { gate_proj, up_proj, down_proj };

std::string embedding_name();
std::string final_norm_name();
std::string lm_head_name();
std::string layer_tensor_name(const ModelConfig& config, int64_t layer, LayerTensor tensor);
std::string expert_tensor_name(const ModelConfig& config, int64_t layer, int64_t expert, ExpertTensor tensor);

Shape layer_tensor_shape(const ModelConfig& config, LayerTensor tensor);
Shape expert_tensor_shape(const ModelConfig& config, ExpertTensor tensor);

// Every tensor a checkpoint of this config holds, with its shape.
std::map<std::string, Shape> expected_tensors(const ModelConfig& config);
// Whether `tensor` is present for this architecture (q_norm/k_norm only with QK-norm).
bool has_layer_tensor(const ModelConfig& config, LayerTensor tensor);

}  // namespace temoe
