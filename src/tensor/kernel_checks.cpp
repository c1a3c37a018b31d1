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

void check_mask_rows(const Tensor& x, std::span<const uint8_t> allowed) {
  check_rank(x, 2, "mask_rows x");
  TEMOE_CHECK(static_cast<int64_t>(allowed.size()) == x.numel(),
              "mask_rows: " << allowed.size() << " flags for x of shape " << shape_string(x.shape()));
}

void check_top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen,
                       const Tensor& gates) {
  check_rank(logits, 2, "top_k_gates logits");
  check_shape(probabilities, logits.shape(), "top_k_gates probabilities");
  check_rank(gates, 2, "top_k_gates gates");
  const int64_t rows = logits.dim(0), width = logits.dim(1), k = gates.dim(1);
  TEMOE_CHECK(gates.dim(0) == rows && k >= 1, "top_k_gates: gates of shape " << shape_string(gates.shape()) << " for "
                                                                               << rows << " rows of logits");
  TEMOE_CHECK(static_cast<int64_t>(chosen.size()) == rows * k,
              "top_k_gates: " << chosen.size() << " chosen ids for " << rows << " rows x k = " << k);
  for (size_t i = 0; i < chosen.size(); ++i) {
    TEMOE_CHECK(chosen[i] >= 0 && chosen[i] < width, "top_k_gates: chosen id " << chosen[i] << " of row "
                                                                                << static_cast<int64_t>(i) / k
                                                                                << " outside [0, " << width << ")");
  }
}

void check_logit_comparison(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                            std::span<const double> target_log_ratio, std::span<const double> kl,
                            std::span<const int32_t> teacher_top, std::span<const int32_t> student_top) {
  check_rank(teacher, 2, "compare_logits teacher");
  check_shape(student, teacher.shape(), "compare_logits student");
  const int64_t rows = teacher.dim(0), width = teacher.dim(1);
  TEMOE_CHECK(width >= 1, "compare_logits: rows of width 0");
  const auto expect = [rows](size_t size, const char* what) {
    TEMOE_CHECK(static_cast<int64_t>(size) == rows, "compare_logits: " << size << " " << what << " for " << rows << " rows");
  };
  expect(targets.size(), "targets");
  expect(target_log_ratio.size(), "log-ratio slots");
  expect(kl.size(), "KL slots");
  expect(teacher_top.size(), "teacher argmax slots");
  expect(student_top.size(), "student argmax slots");
  for (size_t i = 0; i < targets.size(); ++i) {
    TEMOE_CHECK(targets[i] >= 0 && targets[i] < width,
                "target token " << targets[i] << " at row " << i << " outside the vocabulary [0, " << width << ")");
  }
}

}  // namespace temoe
