#include "src/model/trainable_moe_transformer.hpp"

#include <cmath>

#include "src/core/error.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe {

TrainableMoeTransformer::TrainableMoeTransformer(const ModelConfig& config, const ModelWeights& weights,
                                                 ModelWeights& gradients, Backend& backend, TrainableExperts& experts)
    : config_(config), weights_(weights), gradients_(gradients), backend_(backend), experts_(experts) {
  require_pretrainable(config, "the backward pass");
  TEMOE_CHECK(static_cast<int64_t>(weights.layers.size()) == config.num_layers,
              "weights hold " << weights.layers.size() << " layers, config " << config.num_layers);
  TEMOE_CHECK(gradients.layers.size() == weights.layers.size(),
              "gradients hold " << gradients.layers.size() << " layers, weights " << weights.layers.size());
}

Tensor TrainableMoeTransformer::forward(std::span<const int32_t> tokens, int64_t batch, int64_t time,
                                        ActivationTape& tape) {
  TEMOE_CHECK(static_cast<int64_t>(tokens.size()) == batch * time,
              "forward: " << tokens.size() << " tokens for batch " << batch << " x time " << time);
  check_token_ids(tokens, config_.vocab_size, time, "tokens");
  config_.check_positions(time, "forward");
  const int64_t count = batch * time, width = config_.hidden_size;
  const Device device = backend_.device();
  tape.batch = batch;
  tape.time = time;
  tape.tokens.assign(tokens.begin(), tokens.end());
  tape.layers.assign(static_cast<size_t>(config_.num_layers), {});
  Tensor residual({count, width}, device);
  backend_.gather_rows(weights_.embedding, tokens, residual);
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    LayerTape& layer_tape = tape.layers[static_cast<size_t>(layer)];
    attention_forward(layer, residual, layer_tape.attention, batch, time);
    moe_forward(layer, residual, layer_tape.moe);
  }
  tape.final_input = residual;
  tape.final_normed = Tensor({count, width}, device);
  backend_.rms_norm(residual, weights_.final_norm, static_cast<float>(config_.rms_norm_eps), tape.final_normed);
  Tensor logits({count, config_.vocab_size}, device);
  backend_.matmul_transposed(tape.final_normed, weights_.lm_head, logits, false);
  return logits.reshaped({batch, time, config_.vocab_size});
}

// The same kernels in the same order as MoeTransformer::attention, keeping the intermediates.
void TrainableMoeTransformer::attention_forward(int64_t layer, Tensor& residual, AttentionTape& tape, int64_t batch,
                                                int64_t time) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  const int64_t count = batch * time, width = config_.hidden_size, head_dim = config_.head_dim;
  const int64_t q_width = config_.num_heads * head_dim, kv_width = config_.num_kv_heads * head_dim;
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  const Device device = backend_.device();
  tape.input = residual.clone();
  tape.normed = Tensor({count, width}, device);
  backend_.rms_norm(residual, w.input_norm, eps, tape.normed);
  Tensor q({count, q_width}, device), k({count, kv_width}, device);
  tape.v = Tensor({count, kv_width}, device);
  backend_.matmul_transposed(tape.normed, w.q_proj, q, false);
  backend_.matmul_transposed(tape.normed, w.k_proj, k, false);
  backend_.matmul_transposed(tape.normed, w.v_proj, tape.v, false);
  if (config_.qk_norm) {
    tape.q_projected = q;
    tape.k_projected = k;
    q = Tensor({count, q_width}, device);
    k = Tensor({count, kv_width}, device);
    backend_.rms_norm(tape.q_projected, w.q_norm, eps, q);
    backend_.rms_norm(tape.k_projected, w.k_norm, eps, k);
  }
  tape.q = q.reshaped({batch, time, config_.num_heads, head_dim});
  tape.k = k.reshaped({batch, time, config_.num_kv_heads, head_dim});
  tape.v = tape.v.reshaped(tape.k.shape());
  backend_.rotary(tape.q, config_.rope_theta);
  backend_.rotary(tape.k, config_.rope_theta);
  Tensor attended({batch, time, config_.num_heads, head_dim}, device);
  backend_.causal_attention(tape.q, tape.k, tape.v, attended);
  tape.attended = attended.reshaped({count, q_width});
  backend_.matmul_transposed(tape.attended, w.o_proj, residual, true);
}

// The same computation as MoeTransformer::moe_input followed by MoeTransformer::moe (no mask).
void TrainableMoeTransformer::moe_forward(int64_t layer, Tensor& residual, MoeTape& tape) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  const int64_t count = residual.dim(0), width = config_.hidden_size, top_k = config_.top_k;
  const Device device = backend_.device();
  tape.input = residual.clone();
  tape.normed = Tensor({count, width}, device);
  backend_.rms_norm(residual, w.post_attention_norm, static_cast<float>(config_.rms_norm_eps), tape.normed);
  tape.probabilities = Tensor({count, config_.num_experts}, device);
  backend_.matmul_transposed(tape.normed, w.router, tape.probabilities, false);
  backend_.softmax_rows(tape.probabilities);
  tape.chosen.assign(static_cast<size_t>(count * top_k), 0);
  tape.gate_weights = Tensor({count, top_k}, device);
  backend_.top_k_rows(tape.probabilities, static_cast<int>(top_k), tape.chosen, tape.gate_weights);
  if (config_.normalize_top_k) {
    // Mixtral's gates: the chosen probabilities renormalised over the k (the logits are not read).
    backend_.top_k_gates(tape.probabilities, tape.probabilities, tape.chosen, Backend::TopKGate::renormalised_probabilities,
                         tape.gate_weights);
  }
  tape.slots = Tensor({count * top_k, width}, device);
  experts_.forward(layer, tape.normed, tape.chosen, top_k, tape.slots, tape.experts);
  backend_.combine_slots(tape.slots, tape.gate_weights, residual, true);
}

void TrainableMoeTransformer::backward(const ActivationTape& tape, const Tensor& grad_logits,
                                       std::span<const std::vector<float>> router_probability_grads) {
  const int64_t count = tape.batch * tape.time, width = config_.hidden_size, vocab = config_.vocab_size;
  TEMOE_CHECK(static_cast<int64_t>(tape.layers.size()) == config_.num_layers,
              "backward: the tape holds " << tape.layers.size() << " layers, the model " << config_.num_layers
                                          << " (was forward() called?)");
  TEMOE_CHECK(grad_logits.numel() == count * vocab, "backward: grad_logits has shape "
                                                        << shape_string(grad_logits.shape()) << ", expected ["
                                                        << count << ", " << vocab << "]");
  TEMOE_CHECK(router_probability_grads.empty() || static_cast<int64_t>(router_probability_grads.size()) == config_.num_layers,
              "backward: " << router_probability_grads.size() << " router gradient vectors for " << config_.num_layers
                           << " layers");
  for (const auto& per_layer : router_probability_grads) {
    TEMOE_CHECK(static_cast<int64_t>(per_layer.size()) == config_.num_experts ||
                    static_cast<int64_t>(per_layer.size()) == count * config_.num_experts,
                "backward: a router gradient vector has " << per_layer.size() << " entries for " << config_.num_experts
                                                          << " experts and " << count << " tokens (expected "
                                                          << config_.num_experts << " or " << count * config_.num_experts
                                                          << ")");
  }
  const Device device = backend_.device();
  const Tensor upstream = grad_logits.reshaped({count, vocab});
  // LM head and final norm.
  backend_.matmul_transposed_left(upstream, tape.final_normed, gradients_.lm_head, true);
  Tensor grad_normed({count, width}, device);
  backend_.matmul(upstream, weights_.lm_head, grad_normed, false);
  Tensor grad_residual({count, width}, device);
  backend_.rms_norm_backward(tape.final_input, weights_.final_norm, static_cast<float>(config_.rms_norm_eps), grad_normed,
                             grad_residual, gradients_.final_norm, false);
  for (int64_t layer = config_.num_layers - 1; layer >= 0; --layer) {
    const LayerTape& layer_tape = tape.layers[static_cast<size_t>(layer)];
    const std::span<const float> probability_grad =
        router_probability_grads.empty() ? std::span<const float>() : router_probability_grads[static_cast<size_t>(layer)];
    moe_backward(layer, layer_tape.moe, probability_grad, grad_residual);
    attention_backward(layer, layer_tape.attention, tape.batch, tape.time, grad_residual);
  }
  // Tied: gradients_.lm_head is gradients_.embedding, so both uses add into one tensor.
  backend_.scatter_add_rows(grad_residual, tape.tokens, gradients_.embedding);
}

void TrainableMoeTransformer::moe_backward(int64_t layer, const MoeTape& tape, std::span<const float> probability_grad,
                                           Tensor& grad_residual) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  LayerWeights& g = gradients_.layers.at(static_cast<size_t>(layer));
  const int64_t count = grad_residual.dim(0), width = config_.hidden_size, top_k = config_.top_k;
  const int64_t experts = config_.num_experts;
  const Device device = backend_.device();
  // residual_out = residual_in + sum_s gate[t, s] * slot[t, s].
  Tensor grad_slots({count * top_k, width}, device), grad_gates({count, top_k}, device);
  backend_.combine_slots_backward(tape.slots, tape.gate_weights, grad_residual, grad_slots, grad_gates);
  Tensor grad_slot_inputs({count * top_k, width}, device);
  experts_.backward(layer, tape.experts, grad_slots, grad_slot_inputs);
  // Each token's slots summed in slot order (weights of exactly 1), however experts were placed.
  Tensor ones({count, top_k}, device);
  ones.fill(1.0f);
  Tensor grad_normed({count, width}, device);
  backend_.combine_slots(grad_slot_inputs, ones, grad_normed, false);

  // Gate weights -> router probabilities. The top-k choice is piecewise constant, so only the
  // chosen probabilities receive the gates' gradient; Mixtral's g_s = p_s / Z adds
  // dp_j = (dg_j - sum_s g_s dg_s) / Z. The load-balancing term adds its per-expert constant, the routing-locality
  // term a gradient per token.
  TEMOE_CHECK(device == Device::cpu, "router backward runs on the host");
  Tensor grad_probabilities({count, experts}, device);
  float* grad_p = grad_probabilities.data();
  const float* p = tape.probabilities.data();
  const float* gates = tape.gate_weights.data();
  const float* grad_g = grad_gates.data();
  for (int64_t token = 0; token < count; ++token) {
    float* row = grad_p + token * experts;
    // The gradient given for the probabilities: one [E] row for every token, or one row per token.
    const int64_t given = probability_grad.size() == static_cast<size_t>(experts) ? 0 : token * experts;
    for (int64_t e = 0; e < experts; ++e) {
      row[e] = probability_grad.empty() ? 0.0f : probability_grad[static_cast<size_t>(given + e)];
    }
    const int32_t* chosen = tape.chosen.data() + token * top_k;
    if (config_.normalize_top_k) {
      float total = 0.0f;  // Z as the forward summed it
      double weighted = 0.0;
      for (int64_t s = 0; s < top_k; ++s) {
        total += p[token * experts + chosen[s]];
        weighted += static_cast<double>(gates[token * top_k + s]) * grad_g[token * top_k + s];
      }
      for (int64_t s = 0; s < top_k; ++s) {
        row[chosen[s]] += static_cast<float>((grad_g[token * top_k + s] - weighted) / total);
      }
    } else {
      for (int64_t s = 0; s < top_k; ++s) row[chosen[s]] += grad_g[token * top_k + s];
    }
  }
  Tensor grad_router_logits({count, experts}, device);
  backend_.softmax_rows_backward(tape.probabilities, grad_probabilities, grad_router_logits);
  backend_.matmul_transposed_left(grad_router_logits, tape.normed, g.router, true);
  backend_.matmul(grad_router_logits, w.router, grad_normed, true);
  backend_.rms_norm_backward(tape.input, w.post_attention_norm, static_cast<float>(config_.rms_norm_eps), grad_normed,
                             grad_residual, g.post_attention_norm, true);
}

void TrainableMoeTransformer::attention_backward(int64_t layer, const AttentionTape& tape, int64_t batch, int64_t time,
                                                 Tensor& grad_residual) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  LayerWeights& g = gradients_.layers.at(static_cast<size_t>(layer));
  const int64_t count = batch * time, width = config_.hidden_size, head_dim = config_.head_dim;
  const int64_t q_width = config_.num_heads * head_dim, kv_width = config_.num_kv_heads * head_dim;
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  const Device device = backend_.device();
  // residual_out = residual_in + attended o_proj^T.
  backend_.matmul_transposed_left(grad_residual, tape.attended, g.o_proj, true);
  Tensor grad_attended({count, q_width}, device);
  backend_.matmul(grad_residual, w.o_proj, grad_attended, false);
  Tensor grad_q({batch, time, config_.num_heads, head_dim}, device);
  Tensor grad_k({batch, time, config_.num_kv_heads, head_dim}, device);
  Tensor grad_v({batch, time, config_.num_kv_heads, head_dim}, device);
  backend_.causal_attention_backward(tape.q, tape.k, tape.v, grad_attended.reshaped(grad_q.shape()), grad_q, grad_k,
                                     grad_v);
  backend_.rotary_backward(grad_q, config_.rope_theta);
  backend_.rotary_backward(grad_k, config_.rope_theta);
  Tensor grad_q_projected = grad_q.reshaped({count, q_width});
  Tensor grad_k_projected = grad_k.reshaped({count, kv_width});
  if (config_.qk_norm) {
    Tensor q_before({count, q_width}, device), k_before({count, kv_width}, device);
    backend_.rms_norm_backward(tape.q_projected, w.q_norm, eps, grad_q_projected, q_before, g.q_norm, false);
    backend_.rms_norm_backward(tape.k_projected, w.k_norm, eps, grad_k_projected, k_before, g.k_norm, false);
    grad_q_projected = q_before;
    grad_k_projected = k_before;
  }
  const Tensor grad_v_projected = grad_v.reshaped({count, kv_width});
  backend_.matmul_transposed_left(grad_q_projected, tape.normed, g.q_proj, true);
  backend_.matmul_transposed_left(grad_k_projected, tape.normed, g.k_proj, true);
  backend_.matmul_transposed_left(grad_v_projected, tape.normed, g.v_proj, true);
  Tensor grad_normed({count, width}, device);
  backend_.matmul(grad_q_projected, w.q_proj, grad_normed, false);
  backend_.matmul(grad_k_projected, w.k_proj, grad_normed, true);
  backend_.matmul(grad_v_projected, w.v_proj, grad_normed, true);
  backend_.rms_norm_backward(tape.input, w.input_norm, eps, grad_normed, grad_residual, g.input_norm, true);
}

}  // namespace temoe
