// CudaBackend's routing inside held masks and the architectures' gate rules (backend.hpp). CPU
// peer: cpu_backend_masked_routing.cpp, whose arithmetic these kernels repeat operation for
// operation (fp32, sums in slot order), so the gates agree to the last bit or two (expf and
// std::exp may differ by an ulp).
#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

namespace {
using namespace cuda_kernels;

__global__ void mask_rows_kernel(float* x, const uint8_t* allowed, int64_t count) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index < count && !allowed[index]) x[index] = -INFINITY;
}

// One thread per row: k is small (2 to 8), and the row's sums must run in slot order.
__global__ void top_k_gates_kernel(const float* logits, const float* probabilities, const int32_t* chosen,
                                   int64_t rows, int64_t experts, int64_t top_k, Backend::TopKGate rule, float* gates) {
  const int64_t token = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (token >= rows) return;
  const int32_t* ids = chosen + token * top_k;
  float* row = gates + token * top_k;
  if (rule == Backend::TopKGate::softmax_of_chosen_logits) {
    float maximum = -INFINITY;
    for (int64_t s = 0; s < top_k; ++s) maximum = fmaxf(maximum, logits[token * experts + ids[s]]);
    float total = 0.0f;
    for (int64_t s = 0; s < top_k; ++s) {
      row[s] = expf(__fsub_rn(logits[token * experts + ids[s]], maximum));
      total = __fadd_rn(total, row[s]);
    }
    for (int64_t s = 0; s < top_k; ++s) row[s] = __fdiv_rn(row[s], total);
    return;
  }
  for (int64_t s = 0; s < top_k; ++s) row[s] = probabilities[token * experts + ids[s]];
  if (rule == Backend::TopKGate::renormalised_probabilities) {
    float total = 0.0f;
    for (int64_t s = 0; s < top_k; ++s) total = __fadd_rn(total, row[s]);
    for (int64_t s = 0; s < top_k; ++s) row[s] = __fdiv_rn(row[s], total);
  }
}

}  // namespace

void CudaBackend::mask_rows(Tensor& x, std::span<const uint8_t> allowed) {
  check_cuda_tensor(x, "mask_rows x");
  check_mask_rows(x, allowed);
  if (allowed.empty()) return;
  const DeviceCopy<uint8_t> device_allowed(allowed);
  const auto count = static_cast<int64_t>(allowed.size());
  mask_rows_kernel<<<blocks_for(count), kThreads>>>(x.data(), device_allowed.data(), count);
  TEMOE_CUDA_LAUNCHED("mask_rows_kernel");
}

void CudaBackend::top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen,
                              TopKGate rule, Tensor& gates) {
  check_cuda_tensor(logits, "top_k_gates logits");
  check_cuda_tensor(probabilities, "top_k_gates probabilities");
  check_cuda_tensor(gates, "top_k_gates gates");
  check_top_k_gates(logits, probabilities, chosen, gates);
  const int64_t rows = logits.dim(0);
  if (rows == 0) return;
  const DeviceIndices device_chosen(chosen);
  top_k_gates_kernel<<<blocks_for(rows), kThreads>>>(logits.data(), probabilities.data(), device_chosen.data(), rows,
                                                     logits.dim(1), gates.dim(1), rule, gates.data());
  TEMOE_CUDA_LAUNCHED("top_k_gates_kernel");
}

}  // namespace temoe
