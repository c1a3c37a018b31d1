#pragma once
// The frozen weights one rank holds: all dense tensors plus the experts of its expert range.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "src/model/lora_adapter.hpp"
#include "src/model/model_config.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

// The experts a rank holds (in every layer), by global id in local-index order: a contiguous
// block [first, first + count) by default, or any ascending list (a placement computed from
// co-selection, parallel/co_selection_placement.hpp).
class ExpertSet {
 public:
  ExpertSet() = default;
  ExpertSet(int64_t first, int64_t count);
  // Ascending, distinct, non-negative ids; throws naming the first id that is not.
  static ExpertSet of(std::vector<int64_t> ids);

  int64_t count() const { return static_cast<int64_t>(ids_.size()); }
  int64_t id(int64_t local) const { return ids_.at(static_cast<size_t>(local)); }
  const std::vector<int64_t>& ids() const { return ids_; }
  bool contains(int64_t expert) const { return local_index(expert) >= 0; }
  int64_t local_index(int64_t expert) const;  // -1 when not held
  std::string describe() const;               // "[4, 8)" for a block, else "{1, 5, 9}"
  bool operator==(const ExpertSet&) const = default;

 private:
  std::vector<int64_t> ids_;
};

// A SwiGLU FFN (a routed expert, Qwen's shared expert or a dense layer's MLP). gpt-oss's fused,
// gate/up-interleaved tensors are split into this form when they are read.
struct ExpertWeights {
  Tensor gate_proj;  // [F, D]
  Tensor up_proj;    // [F, D]
  Tensor down_proj;  // [D, F]
  Tensor gate_bias;  // [F] (gpt-oss only)
  Tensor up_bias;    // [F] (gpt-oss only)
  Tensor down_bias;  // [D] (gpt-oss only)
  // LoRA adapters (lora_adapters.hpp), undefined when none were loaded.
  LoraAdapter gate_lora, up_lora, down_lora;

  static ExpertWeights without_biases(Tensor gate, Tensor up, Tensor down) {
    ExpertWeights weights;
    weights.gate_proj = std::move(gate);
    weights.up_proj = std::move(up);
    weights.down_proj = std::move(down);
    return weights;
  }
};

struct LayerWeights {
  Tensor input_norm;           // [D]
  Tensor q_proj;               // [H * hd, D]
  Tensor k_proj;               // [KV * hd, D]
  Tensor v_proj;               // [KV * hd, D]
  Tensor o_proj;               // [D, H * hd]
  Tensor q_norm;               // [H * hd]  (QK-norm only; [hd] per head for Qwen3)
  Tensor k_norm;               // [KV * hd] (QK-norm only; [hd] per head for Qwen3)
  Tensor q_bias, k_bias, v_bias;  // [H * hd], [KV * hd], [KV * hd] (Qwen2-MoE, gpt-oss)
  Tensor o_bias;               // [D] (gpt-oss)
  Tensor sinks;                // [H] (gpt-oss)
  Tensor post_attention_norm;  // [D]
  Tensor router;               // [E, D] (MoE layers)
  Tensor router_bias;          // [E] (gpt-oss)
  std::vector<ExpertWeights> experts;  // the rank's experts: experts[i] is expert local_experts.id(i)
  ExpertWeights shared_expert;  // Qwen2-MoE: [Fs, D], [Fs, D], [D, Fs]
  Tensor shared_expert_gate;    // [1, D]
  ExpertWeights dense_mlp;      // Qwen's dense layers (no router, no experts)
  // LoRA adapters of the attention projections and the router (undefined when none were loaded).
  LoraAdapter q_lora, k_lora, v_lora, o_lora, router_lora;
};

// How an expert turns its gate and up projections into its hidden activation.
struct ExpertActivation {
  bool clamped = false;  // gpt-oss: (clamp(up, -limit, limit) + 1) * g sigmoid(alpha g), g = min(gate, limit)
  float limit = 7.0f;
  float alpha = 1.702f;
};

struct ModelWeights {
  ExpertSet local_experts;
  ExpertActivation expert_activation;  // plain SwiGLU unless the architecture says otherwise
  Tensor embedding;   // [V, D]
  Tensor final_norm;  // [D]
  Tensor lm_head;     // [V, D]; shares the embedding's storage when tied
  std::vector<LayerWeights> layers;
};

// Checks that the checkpoint holds exactly the tensors the config implies (none missing, none
// extra, every shape right) before reading any data, then reads the dense tensors and only the
// experts in `local_experts` (for gpt-oss's fused tensors: only those experts' rows, by pread,
// dequantised from MXFP4 when stored so).
ModelWeights load_model_weights(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config,
                                ExpertSet local_experts);

ExpertActivation expert_activation_of(const ModelConfig& config);

// The same weights in `device`'s memory (a tied LM head keeps sharing the embedding's storage);
// the host copies go when `host` does. For the CUDA backend, which computes on device tensors only.
ModelWeights weights_on_device(const ModelWeights& host, Device device);

// Total bytes (fp32) of the weights a rank holding `local_experts` keeps resident.
int64_t resident_weight_bytes(const ModelConfig& config, int64_t experts_per_rank);

}  // namespace temoe
