#pragma once
// The CUDA implementation of the kernel seam (src/tensor/backend.hpp): cuBLAS sgemm for the
// GEMMs, straightforward kernels for everything else. Semantics are the CPU backend's, operation
// for operation (read src/tensor/cpu_backend*.cpp); only the order of long sums differs, so
// results agree to rounding. The methods are defined beside their CPU peers' concerns:
// cuda_gemm.cu, cuda_norm_kernels.cu, cuda_rotary_kernels.cu, cuda_attention_kernels.cu,
// cuda_routing_kernels.cu, cuda_elementwise_kernels.cu, cuda_loss_kernels.cu.
//
// Everything runs on the legacy default stream of the current device, so kernels, copies and the
// caching allocator's reuse of blocks are ordered without events. Methods that return host data
// (top_k_rows's indices) synchronise.
#include <cublas_v2.h>

#include "src/tensor/backend.hpp"

namespace temoe {

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda; }
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
  void add_in_place(Tensor& x, const Tensor& y) override;
  // cuda_masked_routing_kernels.cu, cuda_logit_comparison_kernels.cu
  void mask_rows(Tensor& x, std::span<const uint8_t> allowed) override;
  void top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen, TopKGate rule,
                   Tensor& gates) override;
  void compare_logits(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                      const LogitComparison& out) override;

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

 private:
  // C = op(A) op(B) in cuBLAS's column-major terms (see cuda_gemm.cu for the row-major mapping).
  void sgemm(cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t k, const float* a,
             int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);

  cublasHandle_t cublas_ = nullptr;
};

// Throws, naming the argument and its device, unless `tensor` lives in CUDA device memory.
void check_cuda_tensor(const Tensor& tensor, const char* what);

}  // namespace temoe
