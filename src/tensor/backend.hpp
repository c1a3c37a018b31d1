#pragma once
// The kernel seam. Model code calls these operations over Tensors and never touches BLAS, OpenMP
// or CUDA itself, so a CUDA backend slots in beside the CPU one without changing the model.
// Index arguments (token ids, expert rows) live in host memory on every backend: they are small
// and produced by host-side routing logic.
#include <cstdint>
#include <memory>
#include <span>

#include "src/tensor/tensor.hpp"

namespace temoe {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // out[m, n] = sum_k a[m, k] * b[n, k] (+ out[m, n] when accumulate). b is a weight stored the
  // Hugging Face way, [out_features, in_features]. a: [M, K], b: [N, K], out: [M, N].
  virtual void matmul_transposed(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) = 0;

  // out = x * rsqrt(mean(x^2) + eps) * weight, row-wise. x, out: [M, D]; weight: [D].
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;

  // Rotary position embedding in the rotate-half convention, in place.
  // x: [B, T, heads, head_dim]; position of (b, t) is t.
  virtual void rotary(Tensor& x, double theta) = 0;

  // Causal grouped-query attention. q: [B, T, H, hd]; k, v: [B, T, KV, hd]; out: [B, T, H, hd].
  virtual void causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out) = 0;

  // Row-wise softmax in place. x: [M, N].
  virtual void softmax_rows(Tensor& x) = 0;

  // Row-wise top-k of x: [M, N] in descending order (ties to the lower index).
  // indices: M*k entries; values: [M, k].
  virtual void top_k_rows(const Tensor& x, int k, std::span<int32_t> indices, Tensor& values) = 0;

  // out = silu(gate) * up. gate, up, out: [M, F].
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  // out[i] = source[rows[i]]. source: [N, D]; out: [rows.size(), D].
  virtual void gather_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) = 0;

  // out[rows[i]] = source[i]. source: [rows.size(), D]; out: [N, D].
  virtual void scatter_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) = 0;

  // out[m] (+)= sum_s weights[m, s] * slots[m * S + s], s ascending, so the sum's order never
  // depends on how tokens were grouped by expert. slots: [M * S, D]; weights: [M, S]; out: [M, D].
  virtual void combine_slots(const Tensor& slots, const Tensor& weights, Tensor& out, bool accumulate) = 0;

  // x += y. x, y: same shape.
  virtual void add_in_place(Tensor& x, const Tensor& y) = 0;
};

// The backend for a device: CPU always; CUDA when built with it.
std::unique_ptr<Backend> make_backend(Device device);

}  // namespace temoe
