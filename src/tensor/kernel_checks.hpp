#pragma once
// The argument checks of kernels that every backend implements (attention, cross-entropy), in one
// place: backends differ only in how they compute. (The GEMMs' are in gemm_shape.hpp.)
#include <cstdint>
#include <span>

#include "src/tensor/tensor.hpp"

namespace temoe {

struct AttentionShape {
  int64_t batch = 0, time = 0, heads = 0, head_dim = 0;
  int64_t kv_heads = 0;  // grouped-query attention: heads / kv_heads query heads share one
  int64_t capacity = 0;  // positions the keys and values hold
};

// q, out: [B, T, H, Dh]; k_cache, v_cache: [B, capacity, KV, Dh]; positions
// [first_position, first_position + T) must fit the cache and H must be a multiple of KV.
AttentionShape check_cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                      int64_t first_position, const Tensor& out);

// q, grad_out, grad_q: [B, T, H, Dh]; k, v, grad_k, grad_v: [B, T, KV, Dh].
AttentionShape check_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                        const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v);

// logits, grad_logits: [N, V]; losses: [N]; one target in [0, V) per row.
void check_cross_entropy(const Tensor& logits, std::span<const int32_t> targets, const Tensor& losses,
                         const Tensor& grad_logits);

// x: [M, N]; allowed: M * N flags.
void check_mask_rows(const Tensor& x, std::span<const uint8_t> allowed);

// logits, probabilities: [M, N]; chosen: M * k ids in [0, N); gates: [M, k], k >= 1.
void check_top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen,
                       const Tensor& gates);

// teacher, student: [M, V], V >= 1; targets: M ids in [0, V); every output span M entries.
void check_logit_comparison(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                            std::span<const double> target_log_ratio, std::span<const double> kl,
                            std::span<const int32_t> teacher_top, std::span<const int32_t> student_top);

}  // namespace temoe
