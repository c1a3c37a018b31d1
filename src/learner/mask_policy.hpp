#pragma once
// Who decides the held masks: the learned controllers, or a baseline (one fixed mask, random
// switching, the greedy cache). A policy scans each sequence of a layer token by token.
#include <cstdint>
#include <span>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

// A layer's decisions for all N = B * T positions (token-major).
struct LayerDecisions {
  int64_t k_hat = 0;
  std::vector<int32_t> masks;              // [N, k_hat] the mask w_t held at position t, ascending ids
  std::vector<int32_t> previous_masks;     // [N, k_hat] w_{t-1} (at t = 0: w_0 itself)
  std::vector<uint8_t> terminated;         // [N] d_t: the policy chose to reload (never at t = 0)
  std::vector<uint8_t> switched;           // [N] the mask differs from the previous token's
  std::vector<int32_t> selected_tuples;    // [N, k_hat] ordered tuple drawn at a termination
};

// Everything a policy may look at for one layer.
struct LayerView {
  int64_t layer = 0;
  int64_t batch = 0;
  int64_t time = 0;
  const Tensor* hidden = nullptr;         // [N, D] the router's input (detached)
  const Tensor* router_logits = nullptr;  // [N, E]
  std::span<const int64_t> sequence_ids;  // [B] global sequence index (keys random draws)
  int64_t step = 0;                       // training step (keys random draws)
};

class MaskPolicy {
 public:
  virtual ~MaskPolicy() = default;
  virtual int64_t k_hat() const = 0;
  virtual LayerDecisions decide(const LayerView& view) = 0;
};

// The router's own top-`count` experts at row `row` of `router_logits`, ascending ids.
std::vector<int32_t> router_top_set(const Tensor& router_logits, int64_t row, int64_t count);

// Helper for policies: records w_t for position (b, t), with the previous mask and switch flag.
void record_mask(LayerDecisions& decisions, int64_t position, std::span<const int32_t> mask,
                 std::span<const int32_t> previous, bool first_position, bool terminated);

}  // namespace temoe
