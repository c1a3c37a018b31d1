#pragma once
// CPU kernels: GEMMs through CBLAS (OpenBLAS threads), everything else with OpenMP loops in which
// every output element is computed by one thread, so results do not depend on the thread count.
#include "src/tensor/backend.hpp"

namespace temoe {

// Below this many elements of work a loop runs on one thread: forking and joining the team costs
// more than it saves, and far more when the cores are shared with other processes.
inline constexpr int64_t kCpuParallelWork = 1 << 15;

// Shared by the plain and the variant kernels (cpu_backend_variants.cpp), so that a model without
// the variants computes exactly what it did before them.
// Rotates x [B, T, heads, head_dim] by the table's rows (row t for position t of the chunk).
void apply_rotary_table(Tensor& x, const struct RotaryTable& table);
// cached_attention with an optional window (0: none) and per-head sinks ([H], or null).
void attend_over_cache(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                       int64_t window, const Tensor* sinks, Tensor& out);

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  void matmul_transposed(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void rotary(Tensor& x, double theta) override;
  void causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out) override;
  void rotary_from(Tensor& x, double theta, int64_t first_position) override;
  void cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                        Tensor& out) override;
  void softmax_rows(Tensor& x) override;
  void top_k_rows(const Tensor& x, int k, std::span<int32_t> indices, Tensor& values) override;
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void gather_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) override;
  void scatter_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) override;
  void combine_slots(const Tensor& slots, const Tensor& weights, Tensor& out, bool accumulate) override;
  void combine_slot_rows(const Tensor& rows, std::span<const int32_t> row_of_slot, const Tensor& weights, Tensor& out,
                         bool accumulate) override;
  void add_in_place(Tensor& x, const Tensor& y) override;
  // cpu_backend_masked_routing.cpp, cpu_backend_logit_comparison.cpp
  void mask_rows(Tensor& x, std::span<const uint8_t> allowed) override;
  void top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen, TopKGate rule,
                   Tensor& gates) override;
  void compare_logits(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                      const LogitComparison& out) override;
  // cpu_backend_variants.cpp
  void add_bias(Tensor& x, const Tensor& bias) override;
  void rotary_with_frequencies(Tensor& x, std::span<const double> inverse_frequencies, double scale,
                               int64_t first_position) override;
  void windowed_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                          int64_t window, const Tensor* sinks, Tensor& out) override;
  void clamped_swiglu(const Tensor& gate, const Tensor& up, float limit, float alpha, Tensor& out) override;
  void add_sigmoid_gated(const Tensor& gate_logits, const Tensor& values, Tensor& out) override;

  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) override;
  void matmul_transposed_left(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) override;
  void rms_norm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& grad_out, Tensor& grad_x,
                         Tensor& grad_weight, bool accumulate) override;
  void rotary_backward(Tensor& grad, double theta) override;
  void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                 Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) override;
  void softmax_rows_backward(const Tensor& probabilities, const Tensor& grad_probabilities, Tensor& grad_logits) override;
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, Tensor& grad_gate,
                       Tensor& grad_up) override;
  void scatter_add_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) override;
  void combine_slots_backward(const Tensor& slots, const Tensor& weights, const Tensor& grad_out, Tensor& grad_slots,
                              Tensor& grad_weights) override;
  void cross_entropy(const Tensor& logits, std::span<const int32_t> targets, float grad_scale, Tensor& losses,
                     Tensor& grad_logits) override;
};

}  // namespace temoe
