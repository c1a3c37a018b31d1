#pragma once
// The frozen decoder-only MoE transformer (Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE, gpt-oss): forward
// over a batch of sequences, whole or chunk by chunk with a KV cache (incremental decoding).
//
// Routing inside a held mask, for every architecture: the k experts are the top-k of the router
// logits the mask allows (the others are never chosen), and their combine weights are what the
// architecture's own gate rule (GateRule, model_config.hpp) gives those k experts: the full
// softmax over all E logits, i.e. the teacher's probabilities, for OLMoE and Qwen with
// norm_topk_prob = false; those probabilities renormalised over the k for Mixtral and
// norm_topk_prob = true; a softmax over the k chosen logits for gpt-oss. So a mask that contains
// the teacher's top-k reproduces the teacher exactly, and one that does not is never rescaled by
// 1 / P(mask).
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/expert_executor.hpp"
#include "src/model/key_value_cache.hpp"
#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/rotary_frequencies.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

// What one MoE layer's router did, for every token of the batch (token-major, N = B * T).
struct RouterRecord {
  Tensor probabilities;                 // [N, E] softmax over all experts (masks or not)
  std::vector<int32_t> chosen_experts;  // N * k, descending probability
  Tensor gate_weights;                  // [N, k] weights used to combine (the architecture's gate rule)
};

struct ForwardRecord {
  std::vector<RouterRecord> layers;
};

// The residual stream of one forward in progress (N = B * T tokens, token-major). With a KV
// cache, the T positions are the chunk [first_position, first_position + T) of each sequence and
// attend to the cached earlier ones too.
struct ForwardState {
  int64_t batch = 0;
  int64_t time = 0;
  Tensor residual;  // [N, D]
  int64_t first_position = 0;
  KeyValueCache* cache = nullptr;  // not owned; null for a whole-sequence forward
};

// What an MoE layer sees before it routes: the router's input and its logits.
struct MoeInput {
  Tensor normed;         // [N, D] post-attention RMSNorm of the residual (the router's input)
  Tensor router_logits;  // [N, E] with the router's bias (gpt-oss); undefined on a dense layer
};

class MoeTransformer {
 public:
  MoeTransformer(const ModelConfig& config, const ModelWeights& weights, Backend& backend, ExpertExecutor& experts);

  // tokens: B * T ids (row-major [B, T]); returns logits [B, T, V]. Fills `record` when given.
  Tensor forward(std::span<const int32_t> tokens, int64_t batch, int64_t time, ForwardRecord* record = nullptr);

  // The same forward, one step at a time, so that a caller can act between a layer's attention
  // and its MoE (the option controllers choose masks from the MoE input). Layer l at position t
  // depends only on layers < l at positions <= t, so running layer by layer is exact.
  ForwardState begin(std::span<const int32_t> tokens, int64_t batch, int64_t time);
  // Incremental decoding: the next `time` positions of each of the cache's sequences (tokens:
  // row-major [B, time]), starting at cache.length(). attention() appends their keys and values to
  // `cache` (which must outlive the state) and attends to everything cached before them; the other
  // steps are the same as for a whole sequence. A prefill is one chunk of the prompt, a decode step
  // a chunk of one position.
  ForwardState begin(KeyValueCache& cache, std::span<const int32_t> tokens, int64_t time);
  void attention(int64_t layer, ForwardState& state);
  MoeInput moe_input(int64_t layer, const ForwardState& state);
  // Routes inside the held masks when given (N * E flags, 1 = allowed; the rule is in the header
  // comment above), runs the experts (and Qwen2-MoE's shared expert) and adds their output to the
  // residual. A pointer, so that "masks, but no tokens on this rank" differs from "no masks":
  // option-mode dispatch needs every rank of its group to agree on which calls carry masks. On a
  // dense layer (Qwen's mlp_only_layers) it runs the layer's MLP; masks are refused there.
  void moe(int64_t layer, ForwardState& state, const MoeInput& input, const std::vector<uint8_t>* held_masks = nullptr,
           RouterRecord* record = nullptr);
  Tensor finish(const ForwardState& state);  // logits [B, T, V] (the chunk's positions)

  const ModelConfig& config() const { return config_; }

  // Whether the LoRA adapters loaded into the weights take part in the forwards that follow (the
  // student with them, the frozen teacher without); true by default, a no-op without adapters.
  // Every rank of an expert-parallel group switches alike, in step.
  void set_adapters_enabled(bool enabled) { experts_.set_adapters_enabled(enabled); }

  const ModelConfig& config_;
  const ModelWeights& weights_;
  Backend& backend_;
  ExpertExecutor& experts_;

 private:
  void dense_mlp(int64_t layer, ForwardState& state, const MoeInput& input);

  RotaryFrequencies rotary_;  // the rotary embedding's frequencies (YaRN-scaled for gpt-oss)
  Tensor slots_workspace_;  // [>= N * k, D] the experts' outputs of the current layer, in slot order
  SlotRows slot_rows_;      // or where an exchange left them
};

// Throws naming the offending position when a token id is outside [0, vocab_size).
void check_token_ids(std::span<const int32_t> tokens, int64_t vocab_size, int64_t time, const std::string& source);

}  // namespace temoe
