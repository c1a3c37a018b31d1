#include "src/tensor/kernel_checks.hpp"

#include "src/core/error.hpp"

namespace temoe {

AttentionShape check_cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                      int64_t first_position, const Tensor& out) {
  check_rank(q, 4, "cached attention q");
  check_rank(k_cache, 4, "cached attention k_cache");
  const AttentionShape shape{q.dim(0), q.dim(1), q.dim(2), q.dim(3), k_cache.dim(2), k_cache.dim(1)};
  check_shape(k_cache, {shape.batch, shape.capacity, shape.kv_heads, shape.head_dim}, "cached attention k_cache");
  check_shape(v_cache, k_cache.shape(), "cached attention v_cache");
  check_shape(out, q.shape(), "cached attention out");
  TEMOE_CHECK(first_position >= 0 && first_position + shape.time <= shape.capacity,
              "cached attention: positions [" << first_position << ", " << first_position + shape.time
                                              << ") do not fit a cache of " << shape.capacity);
  TEMOE_CHECK(shape.kv_heads > 0 && shape.heads % shape.kv_heads == 0,
              "cached attention: " << shape.heads << " query heads are not a multiple of " << shape.kv_heads
                                   << " kv heads");
  return shape;
}

AttentionShape check_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                        const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) {
  check_rank(q, 4, "attention_backward q");
  check_rank(k, 4, "attention_backward k");
  const AttentionShape shape{q.dim(0), q.dim(1), q.dim(2), q.dim(3), k.dim(2), q.dim(1)};
  check_shape(k, {shape.batch, shape.time, shape.kv_heads, shape.head_dim}, "attention_backward k");
  check_shape(v, k.shape(), "attention_backward v");
  check_shape(grad_out, q.shape(), "attention_backward grad_out");
  check_shape(grad_q, q.shape(), "attention_backward grad_q");
  check_shape(grad_k, k.shape(), "attention_backward grad_k");
  check_shape(grad_v, k.shape(), "attention_backward grad_v");
  TEMOE_CHECK(shape.kv_heads > 0 && shape.heads % shape.kv_heads == 0,
              "attention_backward: " << shape.heads << " query heads are not a multiple of " << shape.kv_heads
                                     << " kv heads");
  return shape;
}

void check_cross_entropy(const Tensor& logits, std::span<const int32_t> targets, const Tensor& losses,
                         const Tensor& grad_logits) {
  check_rank(logits, 2, "cross_entropy logits");
  const int64_t rows = logits.dim(0), width = logits.dim(1);
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == rows,
              "cross_entropy: " << targets.size() << " targets for " << rows << " rows of logits");
  check_shape(losses, {rows}, "cross_entropy losses");
  check_shape(grad_logits, logits.shape(), "cross_entropy grad_logits");
  for (size_t i = 0; i < targets.size(); ++i) {
    TEMOE_CHECK(targets[i] < width, "cross_entropy: target " << targets[i] << " of row " << i
                                                             << " is outside the vocabulary [0, " << width << ")");
  }
}

}  // namespace temoe
