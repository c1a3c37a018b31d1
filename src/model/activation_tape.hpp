#pragma once
// What a training forward keeps for the backward (N = B * T tokens, token-major). Inference
// forwards (MoeTransformer) keep none of this.
#include <cstdint>
#include <vector>

#include "src/model/trainable_experts.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

struct AttentionTape {
  Tensor input;        // [N, D] the residual entering the attention block
  Tensor normed;       // [N, D] input_norm(input): the q/k/v projections' input
  Tensor q_projected;  // [N, H * hd] q projection before the QK-norm (QK-norm only)
  Tensor k_projected;  // [N, KV * hd] (QK-norm only)
  Tensor q;            // [B, T, H, hd] after the QK-norm and rotary: attention's input
  Tensor k;            // [B, T, KV, hd] after the QK-norm and rotary
  Tensor v;            // [B, T, KV, hd]
  Tensor attended;     // [N, H * hd] attention's output, before o_proj
};

struct MoeTape {
  Tensor input;                  // [N, D] the residual entering the MoE block
  Tensor normed;                 // [N, D] post_attention_norm(input): router and expert input
  Tensor probabilities;          // [N, E] router softmax over all experts
  std::vector<int32_t> chosen;   // N * k expert ids, descending probability
  Tensor gate_weights;           // [N, k] the combine weights (renormalised for Mixtral)
  Tensor slots;                  // [N * k, D] each (token, slot)'s expert output
  ExpertLayerTape experts;       // what the experts' owners keep
};

struct LayerTape {
  AttentionTape attention;
  MoeTape moe;
};

struct ActivationTape {
  int64_t batch = 0;
  int64_t time = 0;
  std::vector<int32_t> tokens;  // B * T input ids
  std::vector<LayerTape> layers;
  Tensor final_input;   // [N, D] the residual entering the final norm
  Tensor final_normed;  // [N, D] the LM head's input
};

}  // namespace temoe
