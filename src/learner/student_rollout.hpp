#pragma once
// A teacher-forced rollout of the student: the frozen model runs layer by layer; between a layer's
// attention and its MoE the mask policy scans the tokens and the router may only choose inside
// the held masks. Without a policy this is the teacher (plain top-k routing).
#include <cstdint>
#include <span>
#include <vector>

#include "src/learner/mask_policy.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe {

// With a policy, hidden and router_logits are host tensors whatever the model's device (the
// controllers and the learner read them there); logits stay on the model's device.
struct Rollout {
  Tensor logits;                                     // [B, T, V] on the model's device
  std::vector<Tensor> hidden;                        // per layer [N, D]: the router's input (detached)
  std::vector<Tensor> router_logits;                 // per layer [N, E]
  std::vector<LayerDecisions> decisions;             // per layer (empty without a policy)
  std::vector<std::vector<int32_t>> chosen_experts;  // per layer [N, k]: what the router used
};

Rollout run_rollout(MoeTransformer& model, std::span<const int32_t> tokens, int64_t batch, int64_t time,
                    MaskPolicy* policy, std::span<const int64_t> sequence_ids, int64_t step);

// Expands masks [N, k_hat] into N * E allowed-expert flags.
std::vector<uint8_t> allowed_expert_flags(const LayerDecisions& decisions, int64_t num_experts);

}  // namespace temoe
