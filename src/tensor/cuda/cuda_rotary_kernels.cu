// CudaBackend's rotary embedding (rotate-half), forward and backward. The cos / sin tables are
// the CPU's (make_rotary_table, computed in double on the host) copied to the device, and the
// products are rounded separately (__fmul_rn: no fused multiply-add), so the results equal the
// CPU backend's bit for bit.
#include <vector>

#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"
#include "src/tensor/rotary_table.hpp"

namespace temoe {

namespace {
using namespace cuda_kernels;

// One thread per (b, t, h, i), i < half. direction +1: forward (x1 c - x2 s, x2 c + x1 s);
// -1: the transpose, for the gradient (x1 c + x2 s, x2 c - x1 s).
__global__ void rotary_kernel(float* x, const float* cos_table, const float* sin_table, int64_t time, int64_t heads,
                              int64_t half, int64_t count, float direction) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= count) return;
  const int64_t i = index % half, vector_index = index / half;  // vector_index = (b * time + t) * heads + h
  const int64_t t = (vector_index / heads) % time;
  float* vector = x + vector_index * 2 * half;
  const float c = cos_table[t * half + i], s = direction * sin_table[t * half + i];
  const float first = vector[i], second = vector[i + half];
  vector[i] = __fsub_rn(__fmul_rn(first, c), __fmul_rn(second, s));
  vector[i + half] = __fadd_rn(__fmul_rn(second, c), __fmul_rn(first, s));
}

void apply_rotary(Tensor& x, double theta, int64_t first_position, float direction, const char* what) {
  check_cuda_tensor(x, what);
  check_rank(x, 4, what);
  const int64_t time = x.dim(1), heads = x.dim(2), head_dim = x.dim(3);
  TEMOE_CHECK(head_dim % 2 == 0, what << ": head_dim " << head_dim << " must be even");
  TEMOE_CHECK(first_position >= 0, what << ": first position " << first_position << " is negative");
  const int64_t count = x.numel() / 2;
  if (count == 0) return;
  const RotaryTable table = make_rotary_table(time, head_dim, theta, first_position);
  DeviceScratch<float> cos_table(table.cos.size()), sin_table(table.sin.size());
  copy_cuda_memory(cos_table.data(), table.cos.data(), table.cos.size() * sizeof(float));
  copy_cuda_memory(sin_table.data(), table.sin.data(), table.sin.size() * sizeof(float));
  rotary_kernel<<<blocks_for(count), kThreads>>>(x.data(), cos_table.data(), sin_table.data(), time, heads, table.half,
                                                 count, direction);
  TEMOE_CUDA_LAUNCHED("rotary_kernel");
}
}  // namespace

void CudaBackend::rotary(Tensor& x, double theta) { apply_rotary(x, theta, 0, 1.0f, "rotary x"); }

void CudaBackend::rotary_from(Tensor& x, double theta, int64_t first_position) {
  apply_rotary(x, theta, first_position, 1.0f, "rotary x");
}

void CudaBackend::rotary_backward(Tensor& grad, double theta) {
  apply_rotary(grad, theta, 0, -1.0f, "rotary_backward grad");
}

}  // namespace temoe
