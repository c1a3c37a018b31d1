#pragma once
// CPU kernels: GEMMs through CBLAS (OpenBLAS threads), everything else with OpenMP loops in which
// every output element is computed by one thread, so results do not depend on the thread count.
#include "src/tensor/backend.hpp"

namespace temoe {

// Below this many elements of work a loop runs on one thread: forking and joining the team costs
// more than it saves, and far more when the cores are shared with other processes.
inline constexpr int64_t kCpuParallelWork = 1 << 15;

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
