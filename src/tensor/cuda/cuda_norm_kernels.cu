// CudaBackend's RMSNorm, forward and backward (the CPU peers: cpu_backend.cpp,
// cpu_backend_backward.cpp). One block per row; the sum of squares is a float block reduction (a
// tree instead of the CPU's SIMD lanes, so r agrees to rounding).
#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"

namespace temoe {

namespace {
using namespace cuda_kernels;

// r = 1 / sqrt(mean(x^2) + eps) of one row, in every thread of the block.
__device__ float inverse_rms(const float* row, int64_t width, float eps, float* scratch) {
  float sum_squares = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) sum_squares += row[i] * row[i];
  sum_squares = block_sum(sum_squares, scratch);
  return 1.0f / sqrtf(sum_squares / static_cast<float>(width) + eps);
}

// out may alias x: each element is read and written by the same thread, after the reduction.
__global__ void rms_norm_kernel(const float* x, const float* weight, float eps, int64_t width, float* out) {
  __shared__ float scratch[kWarp];
  const float* in_row = x + blockIdx.x * width;
  float* out_row = out + blockIdx.x * width;
  const float inverse = inverse_rms(in_row, width, eps, scratch);
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) out_row[i] = in_row[i] * inverse * weight[i];
}

// dx_j = r w_j dy_j - x_j r^3 / D * sum_i dy_i w_i x_i (the projection in double, as on the CPU).
__global__ void rms_norm_backward_rows_kernel(const float* x, const float* weight, float eps, const float* grad_out,
                                              int64_t width, bool accumulate, float* grad_x, float* inverses) {
  __shared__ float scratch[kWarp];
  __shared__ double scratch_double[kWarp];
  const int64_t offset = blockIdx.x * width;
  const float r = inverse_rms(x + offset, width, eps, scratch);
  double projection = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    projection += static_cast<double>(grad_out[offset + i]) * weight[i] * x[offset + i];
  }
  projection = block_sum(projection, scratch_double);
  const auto coefficient = static_cast<float>(projection * r * r * r / static_cast<double>(width));
  if (threadIdx.x == 0) inverses[blockIdx.x] = r;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float value = r * weight[i] * grad_out[offset + i] - x[offset + i] * coefficient;
    grad_x[offset + i] = accumulate ? grad_x[offset + i] + value : value;
  }
}

// dw_i += sum_rows dy_i x_i r, one thread per column, rows in order, in double.
__global__ void rms_norm_backward_weight_kernel(const float* x, const float* grad_out, const float* inverses,
                                                int64_t rows, int64_t width, float* grad_weight) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= width) return;
  double sum = 0.0;
  for (int64_t row = 0; row < rows; ++row) {
    sum += static_cast<double>(grad_out[row * width + i]) * x[row * width + i] * inverses[row];
  }
  grad_weight[i] += static_cast<float>(sum);
}
}  // namespace

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  check_cuda_tensor(x, "rms_norm x");
  check_cuda_tensor(weight, "rms_norm weight");
  check_cuda_tensor(out, "rms_norm out");
  check_rank(x, 2, "rms_norm x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  check_shape(weight, {width}, "rms_norm weight");
  check_shape(out, x.shape(), "rms_norm out");
  if (rows == 0 || width == 0) return;
  rms_norm_kernel<<<row_blocks(rows, "rms_norm"), kThreads>>>(x.data(), weight.data(), eps, width, out.data());
  TEMOE_CUDA_LAUNCHED("rms_norm_kernel");
}

void CudaBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& grad_out,
                                    Tensor& grad_x, Tensor& grad_weight, bool accumulate) {
  check_cuda_tensor(x, "rms_norm_backward x");
  check_cuda_tensor(weight, "rms_norm_backward weight");
  check_cuda_tensor(grad_out, "rms_norm_backward grad_out");
  check_cuda_tensor(grad_x, "rms_norm_backward grad_x");
  check_cuda_tensor(grad_weight, "rms_norm_backward grad_weight");
  check_rank(x, 2, "rms_norm_backward x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  check_shape(weight, {width}, "rms_norm_backward weight");
  check_shape(grad_out, x.shape(), "rms_norm_backward grad_out");
  check_shape(grad_x, x.shape(), "rms_norm_backward grad_x");
  check_shape(grad_weight, {width}, "rms_norm_backward grad_weight");
  if (rows == 0 || width == 0) return;
  DeviceScratch<float> inverses(static_cast<size_t>(rows));
  rms_norm_backward_rows_kernel<<<row_blocks(rows, "rms_norm_backward"), kThreads>>>(
      x.data(), weight.data(), eps, grad_out.data(), width, accumulate, grad_x.data(), inverses.data());
  TEMOE_CUDA_LAUNCHED("rms_norm_backward_rows_kernel");
  rms_norm_backward_weight_kernel<<<blocks_for(width), kThreads>>>(x.data(), grad_out.data(), inverses.data(), rows,
                                                                   width, grad_weight.data());
  TEMOE_CUDA_LAUNCHED("rms_norm_backward_weight_kernel");
}

}  // namespace temoe
