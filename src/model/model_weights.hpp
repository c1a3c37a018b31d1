#pragma once
// The frozen weights one rank holds: all dense tensors plus the experts of its expert range.
#include <cstdint>
#include <string>
#include <vector>

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
  std::vector<ExpertWeights> experts;  // the rank's experts: experts[i] is expert local_experts.id(i)
};

struct ModelWeights {
  ExpertSet local_experts;
  Tensor embedding;   // [V, D]
  Tensor final_norm;  // [D]
  Tensor lm_head;     // [V, D]; shares the embedding's storage when tied
  std::vector<LayerWeights> layers;
};

// Checks that the checkpoint holds exactly the tensors the config implies (none missing, none
// extra, every shape right) before reading any data, then reads the dense tensors and only the
// experts in `local_experts`.
ModelWeights load_model_weights(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config,
                                ExpertSet local_experts);

// Total bytes (fp32) of the weights a rank holding `local_experts` keeps resident.
int64_t resident_weight_bytes(const ModelConfig& config, int64_t experts_per_rank);

}  // namespace temoe
