// CpuBackend's routing inside held masks and the gate rules of the architectures (backend.hpp):
// the reference the CUDA kernels (cuda_masked_routing_kernels.cu) are tested against.
#include <algorithm>
#include <cmath>

#include "src/tensor/cpu_backend.hpp"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

void CpuBackend::mask_rows(Tensor& x, std::span<const uint8_t> allowed) {
  check_host(x, "mask_rows x");
  check_mask_rows(x, allowed);
  float* values = x.data();
  const auto count = static_cast<int64_t>(allowed.size());
  for (int64_t i = 0; i < count; ++i) {
    if (!allowed[static_cast<size_t>(i)]) values[i] = -INFINITY;
  }
}

void CpuBackend::top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen,
                             TopKGate rule, Tensor& gates) {
  check_host(logits, "top_k_gates logits");
  check_host(probabilities, "top_k_gates probabilities");
  check_host(gates, "top_k_gates gates");
  check_top_k_gates(logits, probabilities, chosen, gates);
  const int64_t rows = logits.dim(0), experts = logits.dim(1), top_k = gates.dim(1);
  const float* logit = logits.data();
  const float* probability = probabilities.data();
  for (int64_t token = 0; token < rows; ++token) {
    const int32_t* ids = chosen.data() + token * top_k;
    float* row = gates.data() + token * top_k;
    if (rule == TopKGate::softmax_of_chosen_logits) {
      // Shifted by the largest chosen logit, so that exp never overflows.
      float maximum = -INFINITY;
      for (int64_t s = 0; s < top_k; ++s) maximum = std::max(maximum, logit[token * experts + ids[s]]);
      float total = 0.0f;
      for (int64_t s = 0; s < top_k; ++s) total += row[s] = std::exp(logit[token * experts + ids[s]] - maximum);
      for (int64_t s = 0; s < top_k; ++s) row[s] /= total;
      continue;
    }
    for (int64_t s = 0; s < top_k; ++s) row[s] = probability[token * experts + ids[s]];
    if (rule == TopKGate::renormalised_probabilities) {
      float total = 0.0f;
      for (int64_t s = 0; s < top_k; ++s) total += row[s];
      for (int64_t s = 0; s < top_k; ++s) row[s] /= total;
    }
  }
}

}  // namespace temoe
