#pragma once
// The MoE transformer for training (fp32): a forward that records an activation tape, and the
// backward through every part of it: embeddings (tied or not), RMSNorm, attention (causal, GQA)
// with rotary and OLMoE's QK-norm, the router through its softmax and the top-k selection (the
// gradient reaches the logits through the chosen experts' gate weights, Mixtral's
// renormalisation included; the choice itself is piecewise constant), the SwiGLU experts and the
// LM head. The forward runs the same kernels in the same order as MoeTransformer::forward, so its
// logits are bit-identical to inference's.
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/activation_tape.hpp"
#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/trainable_experts.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

class TrainableMoeTransformer {
 public:
  // `gradients` is laid out as `weights` (make_model_gradients); the backward adds into it.
  // `experts` must add its weight gradients into the same `gradients`.
  TrainableMoeTransformer(const ModelConfig& config, const ModelWeights& weights, ModelWeights& gradients,
                          Backend& backend, TrainableExperts& experts);

  // tokens: B * T ids (row-major [B, T]). Returns the logits [B, T, V] and fills `tape`.
  Tensor forward(std::span<const int32_t> tokens, int64_t batch, int64_t time, ActivationTape& tape);

  // Adds the gradient of a loss L to the weights' gradients, from
  //   grad_logits: [B, T, V] (or [B * T, V]), dL/dlogits;
  //   router_probability_grads: empty, or one vector per layer: [E], dL/dp[t, i] for every token t
  //   (the form the load-balancing loss's gradient takes, with f_i held constant), or [B * T, E],
  //   one row per token (the routing-locality loss's).
  // Under expert parallelism every rank of the group must call it (it joins the reverse exchange).
  void backward(const ActivationTape& tape, const Tensor& grad_logits,
                std::span<const std::vector<float>> router_probability_grads = {});

  const ModelConfig& config() const { return config_; }

 private:
  void attention_forward(int64_t layer, Tensor& residual, AttentionTape& tape, int64_t batch, int64_t time);
  void moe_forward(int64_t layer, Tensor& residual, MoeTape& tape);
  void moe_backward(int64_t layer, const MoeTape& tape, std::span<const float> probability_grad, Tensor& grad_residual);
  void attention_backward(int64_t layer, const AttentionTape& tape, int64_t batch, int64_t time,
                          Tensor& grad_residual);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  ModelWeights& gradients_;
  Backend& backend_;
  TrainableExperts& experts_;
};

}  // namespace temoe
