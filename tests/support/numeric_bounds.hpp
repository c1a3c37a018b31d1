#pragma once
// The bounds that every cross-rank and cross-run numeric comparison in the suite holds to, and why.
// A bound here depends only on the model's shapes and the number of steps, never on the CPU or on
// the BLAS kernel it picks (OpenBLAS chooses kernel, blocking and threading per core type and per
// GEMM shape).
//
// Exactly equal (==, or memcmp of the bytes) wherever both sides perform the same fp32 operations in
// the same order: a rerun with the same config, seed and world size; a resume at the same world
// size; an exchange that only moves values (dispatch, gather, broadcast); discrete decisions (masks,
// switches, token counts) when both sides read the same values.
//
// A bound wherever the arithmetic differs while the maths is the same. A different world size or
// expert-parallel size does that in two ways:
//  - a GEMM sees another number of rows (a rank's own sequences; an expert's tokens gathered from
//    every rank), and the BLAS may sum each length-K dot product in another order for that shape;
//  - a gradient is summed per rank and then across ranks instead of over all tokens in one pass.
// Reassociating a sum of K fp32 terms moves it by at most gamma_K = K u / (1 - K u) times the sum of
// the terms' magnitudes, u = 2^-24 (Higham, "Accuracy and Stability of Numerical Algorithms",
// 2nd ed., section 3.1; the bound holds for every summation order, so for every kernel). We take
// the magnitudes' sum at the scale of the result it is compared against (RMS norms keep the
// activations O(1), and comparisons are relative to the largest magnitude).
//
// Discrete decisions taken from such values (a termination draw against beta, a top-k) can in
// principle flip when a value lands within the bound of its threshold. For the few thousand
// decisions of a test that chance is about decisions x bound, well under 1e-2, so tests still compare
// decisions exactly and say so where they do.
#include <algorithm>
#include <cstdint>

#include "src/model/model_config.hpp"

namespace temoe::testing {

inline constexpr double kFloatUnitRoundoff = 0x1p-24;

// gamma_K: the largest relative change of a K-term fp32 sum under any reordering.
constexpr double reassociation_bound(int64_t terms) {
  const double k_u = static_cast<double>(terms) * kFloatUnitRoundoff;
  return k_u / (1.0 - k_u);
}

// The reductions of one forward pass of the MoE transformer, as the shapes that set their lengths.
struct ForwardShape {
  int64_t layers = 0;
  int64_t hidden = 0;           // d_model: Q/K/V projections, router, expert gate/up, LM head
  int64_t attention_width = 0;  // heads * head_dim: the attention output projection
  int64_t head_dim = 0;         // q . k
  int64_t positions = 0;        // sequence length: the attention-weighted sum over positions
  int64_t intermediate = 0;     // an expert's down projection
  int64_t experts_per_token = 0;  // the gate-weighted combine
};

inline ForwardShape forward_shape(const ModelConfig& config, int64_t positions) {
  return {.layers = config.num_layers,
          .hidden = config.hidden_size,
          .attention_width = config.num_heads * config.head_dim,
          .head_dim = config.head_dim,
          .positions = positions,
          // the widest FFN a token passes through (Qwen's shared expert and dense layers may be wider)
          .intermediate = std::max({config.expert_ffn_size, config.shared_expert_ffn_size, config.dense_ffn_size}),
          // a shared expert's output is one more term of the combine
          .experts_per_token = config.top_k + (config.shared_expert_ffn_size > 0 ? 1 : 0)};
}

// Logits of two forwards whose GEMMs are summed in different orders, relative to the largest
// |logit|: the errors of every reduction along the residual stream add up, layer after layer, then
// the LM head's.
constexpr double forward_reassociation_bound(const ForwardShape& shape) {
  const double per_layer = reassociation_bound(shape.hidden) * 2  // norms' mean square, Q/K/V and router
                           + reassociation_bound(shape.head_dim) + reassociation_bound(shape.positions) +
                           reassociation_bound(shape.attention_width) +
                           reassociation_bound(shape.hidden)  // expert gate/up
                           + reassociation_bound(shape.intermediate) + reassociation_bound(shape.experts_per_token);
  return static_cast<double>(shape.layers) * per_layer + reassociation_bound(shape.hidden);
}

// A quantity after `steps` optimizer steps of two runs that differ by reassociation only (another
// world size), relative to its scale. Each step adds the forward's bound, the backward's (the same
// reductions again) and the weight gradients' sums over the step's tokens (split over ranks in one
// run, in one pass in the other). Adam divides the update by the gradient's RMS, so a relative
// change of the gradient is a relative change of the update: the steps' errors add, and it is their
// sum that bounds the difference at step `steps`.
constexpr double training_reassociation_bound(const ForwardShape& shape, int64_t tokens_per_step, int64_t steps) {
  const double per_step = 2 * forward_reassociation_bound(shape) + reassociation_bound(tokens_per_step);
  return static_cast<double>(steps) * per_step;
}

// A per-step figure (loss, reward, KL, gradient norm) logged after `updates` updates by two runs that
// differ by reassociation only: that step's forward and backward, plus the updates before it.
constexpr double figure_after_updates_bound(const ForwardShape& shape, int64_t tokens_per_step, int64_t updates) {
  return training_reassociation_bound(shape, tokens_per_step, updates + 1);
}

}  // namespace temoe::testing
