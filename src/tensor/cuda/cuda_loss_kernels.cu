// CudaBackend's softmax cross-entropy (loss and logit gradient in one pass over each row). The
// CPU peer is in cpu_backend_backward.cpp: max in float, the partition function in double.
#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

namespace {
using namespace cuda_kernels;

// One block per row: losses[m] = log sum exp(x - max) - (x[target] - max);
// grad = grad_scale (softmax - onehot). A negative target: loss 0, gradient 0.
__global__ void cross_entropy_kernel(const float* logits, const int32_t* targets, float grad_scale, int64_t width,
                                     float* losses, float* grad_logits) {
  __shared__ float scratch[kWarp];
  __shared__ double scratch_double[kWarp];
  const int64_t row = blockIdx.x;
  const float* values = logits + row * width;
  float* grads = grad_logits + row * width;
  const int32_t target = targets[row];
  if (target < 0) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) grads[i] = 0.0f;
    return;
  }
  float maximum = -INFINITY;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) maximum = fmaxf(maximum, values[i]);
  maximum = block_max(maximum, scratch);
  double total = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) total += exp(static_cast<double>(values[i] - maximum));
  total = block_sum(total, scratch_double);
  if (threadIdx.x == 0) losses[row] = static_cast<float>(log(total) - static_cast<double>(values[target] - maximum));
  const double inverse = 1.0 / total;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const double p = exp(static_cast<double>(values[i] - maximum)) * inverse;
    grads[i] = static_cast<float>(grad_scale * (p - (i == target ? 1.0 : 0.0)));
  }
}
}  // namespace

void CudaBackend::cross_entropy(const Tensor& logits, std::span<const int32_t> targets, float grad_scale,
                                Tensor& losses, Tensor& grad_logits) {
  check_cuda_tensor(logits, "cross_entropy logits");
  check_cuda_tensor(losses, "cross_entropy losses");
  check_cuda_tensor(grad_logits, "cross_entropy grad_logits");
  check_cross_entropy(logits, targets, losses, grad_logits);
  const int64_t rows = logits.dim(0), width = logits.dim(1);
  if (rows == 0) return;
  const DeviceIndices device_targets(targets);
  cross_entropy_kernel<<<row_blocks(rows, "cross_entropy"), kThreads>>>(logits.data(), device_targets.data(),
                                                                         grad_scale, width, losses.data(),
                                                                         grad_logits.data());
  TEMOE_CUDA_LAUNCHED("cross_entropy_kernel");
}

}  // namespace temoe
