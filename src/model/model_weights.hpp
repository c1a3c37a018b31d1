#pragma once
// The frozen weights one rank holds: all dense tensors plus the experts of its expert range.
#include <cstdint>
#include <vector>

#include "src/model/model_config.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

// Experts [first, first + count) of every layer.
struct ExpertRange {
  int64_t first = 0;
  int64_t count = 0;
  bool contains(int64_t expert) const { return expert >= first && expert < first + count; }
};

struct ExpertWeights {
  Tensor gate_proj;  // [F, D]
  Tensor up_proj;    // [F, D]
  Tensor down_proj;  // [D, F]
};

struct LayerWeights {
  Tensor input_norm;           // [D]
  Tensor q_proj;               // [H * hd, D]
  Tensor k_proj;               // [KV * hd, D]
  Tensor v_proj;               // [KV * hd, D]
  Tensor o_proj;               // [D, H * hd]
  Tensor q_norm;               // [H * hd]  (QK-norm only)
  Tensor k_norm;               // [KV * hd] (QK-norm only)
  Tensor post_attention_norm;  // [D]
  Tensor router;               // [E, D]
  std::vector<ExpertWeights> experts;  // the rank's range, experts[i] is expert range.first + i
};

struct ModelWeights {
  ExpertRange local_experts;
  Tensor embedding;   // [V, D]
  Tensor final_norm;  // [D]
  Tensor lm_head;     // [V, D]; shares the embedding's storage when tied
  std::vector<LayerWeights> layers;
};

// Checks that the checkpoint holds exactly the tensors the config implies (none missing, none
// extra, every shape right) before reading any data, then reads the dense tensors and only the
// experts in `local_experts`.
ModelWeights load_model_weights(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config,
                                ExpertRange local_experts);

// Total bytes (fp32) of the weights a rank holding `local_experts` keeps resident.
int64_t resident_weight_bytes(const ModelConfig& config, int64_t experts_per_rank);

}  // namespace temoe
