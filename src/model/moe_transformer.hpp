#pragma once
// The frozen decoder-only MoE transformer (Mixtral / OLMoE): forward over a batch of sequences.
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/expert_executor.hpp"
#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

// What one MoE layer's router did, for every token of the batch (token-major, N = B * T).
struct RouterRecord {
  Tensor probabilities;                 // [N, E] softmax over all experts
  std::vector<int32_t> chosen_experts;  // N * k, descending probability
  Tensor gate_weights;                  // [N, k] weights used to combine (renormalised for Mixtral)
};

struct ForwardRecord {
  std::vector<RouterRecord> layers;
};

class MoeTransformer {
 public:
  MoeTransformer(const ModelConfig& config, const ModelWeights& weights, Backend& backend, ExpertExecutor& experts);

  // tokens: B * T ids (row-major [B, T]); returns logits [B, T, V]. Fills `record` when given.
  Tensor forward(std::span<const int32_t> tokens, int64_t batch, int64_t time, ForwardRecord* record = nullptr);

  const ModelConfig& config() const { return config_; }

 private:
  void attention_block(int64_t layer, Tensor& residual, int64_t batch, int64_t time);
  void moe_block(int64_t layer, Tensor& residual, RouterRecord* record);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  Backend& backend_;
  ExpertExecutor& experts_;
};

// Throws naming the offending position when a token id is outside [0, vocab_size).
void check_token_ids(std::span<const int32_t> tokens, int64_t vocab_size, int64_t time, const std::string& source);

}  // namespace temoe
