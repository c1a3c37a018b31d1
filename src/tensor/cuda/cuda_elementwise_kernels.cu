// CudaBackend's element-wise kernels: SwiGLU (forward and backward) and x += y. One thread per
// element; outputs may alias inputs element by element, as on the CPU.
#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"

namespace temoe {

namespace {
using namespace cuda_kernels;

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

// silu(g) = g s(g), s the logistic; silu'(g) = s(g) (1 + g (1 - s(g))).
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* grad_out, float* grad_gate,
                                       float* grad_up, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float gate_value = gate[i], up_value = up[i], upstream = grad_out[i];
  const float sigmoid = 1.0f / (1.0f + expf(-gate_value));
  const float silu = gate_value * sigmoid;
  grad_up[i] = upstream * silu;
  grad_gate[i] = upstream * up_value * sigmoid * (1.0f + gate_value * (1.0f - sigmoid));
}

__global__ void add_kernel(float* x, const float* y, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < count) x[i] += y[i];
}
}  // namespace

void CudaBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  check_cuda_tensor(gate, "swiglu gate");
  check_cuda_tensor(up, "swiglu up");
  check_cuda_tensor(out, "swiglu out");
  check_shape(up, gate.shape(), "swiglu up");
  check_shape(out, gate.shape(), "swiglu out");
  const int64_t count = gate.numel();
  if (count == 0) return;
  swiglu_kernel<<<blocks_for(count), kThreads>>>(gate.data(), up.data(), out.data(), count);
  TEMOE_CUDA_LAUNCHED("swiglu_kernel");
}

void CudaBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, Tensor& grad_gate,
                                  Tensor& grad_up) {
  check_cuda_tensor(gate, "swiglu_backward gate");
  check_cuda_tensor(up, "swiglu_backward up");
  check_cuda_tensor(grad_out, "swiglu_backward grad_out");
  check_cuda_tensor(grad_gate, "swiglu_backward grad_gate");
  check_cuda_tensor(grad_up, "swiglu_backward grad_up");
  check_shape(up, gate.shape(), "swiglu_backward up");
  check_shape(grad_out, gate.shape(), "swiglu_backward grad_out");
  check_shape(grad_gate, gate.shape(), "swiglu_backward grad_gate");
  check_shape(grad_up, gate.shape(), "swiglu_backward grad_up");
  const int64_t count = gate.numel();
  if (count == 0) return;
  swiglu_backward_kernel<<<blocks_for(count), kThreads>>>(gate.data(), up.data(), grad_out.data(), grad_gate.data(),
                                                          grad_up.data(), count);
  TEMOE_CUDA_LAUNCHED("swiglu_backward_kernel");
}

void CudaBackend::add_in_place(Tensor& x, const Tensor& y) {
  check_cuda_tensor(x, "add x");
  check_cuda_tensor(y, "add y");
  check_shape(y, x.shape(), "add y");
  const int64_t count = x.numel();
  if (count == 0) return;
  add_kernel<<<blocks_for(count), kThreads>>>(x.data(), y.data(), count);
  TEMOE_CUDA_LAUNCHED("add_kernel");
}

}  // namespace temoe
