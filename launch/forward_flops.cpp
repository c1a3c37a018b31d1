#include "launch/forward_flops.hpp"

namespace temoe::launch {

double forward_flops(const ModelConfig& config, int64_t batch, int64_t time) {
  double total = 0;
  for (const auto& shape : forward_gemm_shapes(config, batch, time)) {
    total += 2.0 * static_cast<double>(shape.m) * static_cast<double>(shape.n) * static_cast<double>(shape.k) *
             static_cast<double>(shape.repeat);
  }
  // Causal attention: q.k and p.v over (t + 1) keys for each query, per head.
  const double pairs = static_cast<double>(time) * static_cast<double>(time + 1) / 2.0;
  total += 4.0 * pairs * static_cast<double>(config.head_dim * config.num_heads * batch * config.num_layers);
  return total;
}

std::vector<GemmShape> forward_gemm_shapes(const ModelConfig& config, int64_t batch, int64_t time) {
  const int64_t tokens = batch * time, d = config.hidden_size, layers = config.num_layers;
  const int64_t q_width = config.num_heads * config.head_dim, kv_width = config.num_kv_heads * config.head_dim;
  const int64_t rows_per_expert = tokens * config.top_k / config.num_experts;
  return {
      {tokens, q_width, d, layers},
      {tokens, kv_width, d, 2 * layers},
      {tokens, d, q_width, layers},
      {tokens, config.num_experts, d, layers},
      {rows_per_expert, config.expert_ffn_size, d, 2 * layers * config.num_experts},
      {rows_per_expert, d, config.expert_ffn_size, layers * config.num_experts},
      {tokens, config.vocab_size, d, 1},
  };
}

}  // namespace temoe::launch
