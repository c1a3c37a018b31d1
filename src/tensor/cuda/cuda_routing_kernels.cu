// CudaBackend's routing kernels: the router's softmax and top-k, moving rows to and from expert
// groups (gather / scatter / scatter-add, with host row lists copied to the device), and the
// weighted combine of the experts' slots; with their backwards. CPU peers: cpu_backend.cpp,
// cpu_backend_backward.cpp.
#include <algorithm>
#include <numeric>
#include <vector>

#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"

namespace temoe {

namespace {
using namespace cuda_kernels;

// ---- softmax: one block per row.

__global__ void softmax_rows_kernel(float* x, int64_t width) {
  __shared__ float scratch[kWarp];
  float* values = x + blockIdx.x * width;
  float maximum = -INFINITY;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) maximum = fmaxf(maximum, values[i]);
  maximum = block_max(maximum, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    values[i] = expf(values[i] - maximum);
    sum += values[i];
  }
  const float inverse = 1.0f / block_sum(sum, scratch);
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) values[i] *= inverse;
}

__global__ void softmax_rows_backward_kernel(const float* p, const float* g, float* out, int64_t width) {
  __shared__ double scratch[kWarp];
  const int64_t offset = blockIdx.x * width;
  double expected = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) expected += static_cast<double>(p[offset + i]) * g[offset + i];
  const auto mean = static_cast<float>(block_sum(expected, scratch));
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) out[offset + i] = p[offset + i] * (g[offset + i] - mean);
}

// ---- top-k: one warp per row, k rounds of a warp arg-max over the elements that come after the
// previous pick in the order (value descending, index ascending) -- the CPU's comparator.

constexpr int kTopKWarps = kThreads / kWarp;

struct Candidate {
  float value;
  int32_t index;  // -1: none
};

__device__ inline bool comes_before(Candidate a, Candidate b) {
  if (b.index < 0) return a.index >= 0;
  if (a.index < 0) return false;
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

__global__ void top_k_rows_kernel(const float* x, int64_t rows, int64_t width, int k, int32_t* indices,
                                  float* values) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kTopKWarps) + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarp;
  const float* row_values = x + row * width;
  Candidate previous{0.0f, -1};
  for (int round = 0; round < k; ++round) {
    Candidate best{0.0f, -1};
    for (int64_t i = lane; i < width; i += kWarp) {
      const Candidate candidate{row_values[i], static_cast<int32_t>(i)};
      if ((previous.index < 0 || comes_before(previous, candidate)) && comes_before(candidate, best)) best = candidate;
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const Candidate other{__shfl_xor_sync(0xffffffffu, best.value, offset),
                            __shfl_xor_sync(0xffffffffu, best.index, offset)};
      if (comes_before(other, best)) best = other;
    }
    if (lane == 0) {
      indices[row * k + round] = best.index;
      values[row * k + round] = best.value;
    }
    previous = best;
  }
}

// ---- rows by index.

__global__ void gather_rows_kernel(const float* source, const int32_t* rows, int64_t count, int64_t width,
                                   float* out) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= count * width) return;
  const int64_t i = index / width, column = index % width;
  out[index] = source[static_cast<int64_t>(rows[i]) * width + column];
}

__global__ void scatter_rows_kernel(const float* source, const int32_t* sources, const int32_t* rows, int64_t count,
                                    int64_t width, float* out) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= count * width) return;
  const int64_t i = index / width, column = index % width;
  out[static_cast<int64_t>(rows[i]) * width + column] = source[static_cast<int64_t>(sources[i]) * width + column];
}

// Block d adds, for destination row destinations[d], the source rows sources[offsets[d] ..
// offsets[d + 1]) in ascending order: per element the CPU's sequence of additions, bit for bit.
__global__ void scatter_add_rows_kernel(const float* source, const int32_t* destinations, const int32_t* offsets,
                                        const int32_t* sources, int64_t width, float* out) {
  float* row = out + static_cast<int64_t>(destinations[blockIdx.x]) * width;
  const int32_t begin = offsets[blockIdx.x], end = offsets[blockIdx.x + 1];
  for (int64_t column = threadIdx.x; column < width; column += blockDim.x) {
    float sum = row[column];
    for (int32_t i = begin; i < end; ++i) sum += source[static_cast<int64_t>(sources[i]) * width + column];
    row[column] = sum;
  }
}

// ---- combine: out[m] (+)= sum_s w[m, s] slots[m S + s], s ascending, products rounded before
// the sum (no fused multiply-add), as the CPU computes it.

__global__ void combine_slots_kernel(const float* slots, const float* weights, int64_t tokens, int64_t slot_count,
                                     int64_t width, bool accumulate, float* out) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= tokens * width) return;
  const int64_t token = index / width, column = index % width;
  float sum = accumulate ? out[index] : 0.0f;
  for (int64_t s = 0; s < slot_count; ++s) {
    const int64_t slot = token * slot_count + s;
    sum = __fadd_rn(sum, __fmul_rn(weights[slot], slots[slot * width + column]));
  }
  out[index] = sum;
}

// Block per slot row m S + s: grad_slots = w grad_out[m]; grad_weights = <slots, grad_out[m]> in double.
__global__ void combine_slots_backward_kernel(const float* slots, const float* weights, const float* grad_out,
                                              int64_t slot_count, int64_t width, float* grad_slots,
                                              float* grad_weights) {
  __shared__ double scratch[kWarp];
  const int64_t slot = blockIdx.x, token = slot / slot_count;
  const float weight = weights[slot];
  const float* up_row = grad_out + token * width;
  double dot = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    dot += static_cast<double>(slots[slot * width + i]) * up_row[i];
    grad_slots[slot * width + i] = weight * up_row[i];
  }
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) grad_weights[slot] = static_cast<float>(dot);
}

void check_rows(std::span<const int32_t> rows, int64_t count, const char* what) {
  for (const int32_t row : rows) TEMOE_CHECK(row >= 0 && row < count, what << ": row " << row << " outside [0, " << count << ")");
}
}  // namespace

void CudaBackend::softmax_rows(Tensor& x) {
  check_cuda_tensor(x, "softmax x");
  check_rank(x, 2, "softmax x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  if (rows == 0 || width == 0) return;
  softmax_rows_kernel<<<row_blocks(rows, "softmax"), kThreads>>>(x.data(), width);
  TEMOE_CUDA_LAUNCHED("softmax_rows_kernel");
}

void CudaBackend::softmax_rows_backward(const Tensor& probabilities, const Tensor& grad_probabilities,
                                        Tensor& grad_logits) {
  check_cuda_tensor(probabilities, "softmax_backward probabilities");
  check_cuda_tensor(grad_probabilities, "softmax_backward grad_probabilities");
  check_cuda_tensor(grad_logits, "softmax_backward grad_logits");
  check_rank(probabilities, 2, "softmax_backward probabilities");
  check_shape(grad_probabilities, probabilities.shape(), "softmax_backward grad_probabilities");
  check_shape(grad_logits, probabilities.shape(), "softmax_backward grad_logits");
  const int64_t rows = probabilities.dim(0), width = probabilities.dim(1);
  if (rows == 0 || width == 0) return;
  softmax_rows_backward_kernel<<<row_blocks(rows, "softmax_backward"), kThreads>>>(
      probabilities.data(), grad_probabilities.data(), grad_logits.data(), width);
  TEMOE_CUDA_LAUNCHED("softmax_rows_backward_kernel");
}

void CudaBackend::top_k_rows(const Tensor& x, int k, std::span<int32_t> indices, Tensor& values) {
  check_cuda_tensor(x, "top_k x");
  check_cuda_tensor(values, "top_k values");
  check_rank(x, 2, "top_k x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  TEMOE_CHECK(k >= 1 && k <= width, "top_k: k = " << k << " for rows of width " << width);
  TEMOE_CHECK(static_cast<int64_t>(indices.size()) == rows * k,
              "top_k: " << indices.size() << " index slots for " << rows << " rows x k = " << k);
  check_shape(values, {rows, k}, "top_k values");
  if (rows == 0) return;
  DeviceScratch<int32_t> device_indices(indices.size());
  const int64_t blocks = (rows + kTopKWarps - 1) / kTopKWarps;
  top_k_rows_kernel<<<row_blocks(blocks, "top_k"), kThreads>>>(x.data(), rows, width, k, device_indices.data(),
                                                               values.data());
  TEMOE_CUDA_LAUNCHED("top_k_rows_kernel");
  // Indices go to host memory (the seam's contract: routing logic runs on the host); this waits.
  copy_cuda_to_host(indices.data(), device_indices.data(), indices.size() * sizeof(int32_t));
}

void CudaBackend::gather_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_cuda_tensor(source, "gather source");
  check_cuda_tensor(out, "gather out");
  check_rank(source, 2, "gather source");
  const int64_t count = source.dim(0), width = source.dim(1);
  check_shape(out, {static_cast<int64_t>(rows.size()), width}, "gather out");
  check_rows(rows, count, "gather");
  if (rows.empty() || width == 0) return;
  const DeviceIndices device_rows(rows);
  const auto total = static_cast<int64_t>(rows.size()) * width;
  gather_rows_kernel<<<blocks_for(total), kThreads>>>(source.data(), device_rows.data(),
                                                      static_cast<int64_t>(rows.size()), width, out.data());
  TEMOE_CUDA_LAUNCHED("gather_rows_kernel");
}

void CudaBackend::scatter_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_cuda_tensor(source, "scatter source");
  check_cuda_tensor(out, "scatter out");
  check_rank(out, 2, "scatter out");
  const int64_t count = out.dim(0), width = out.dim(1);
  check_shape(source, {static_cast<int64_t>(rows.size()), width}, "scatter source");
  check_rows(rows, count, "scatter");
  if (rows.empty() || width == 0) return;
  // The CPU writes rows in order, so a repeated destination keeps its last source. Threads have
  // no order: keep only each destination's last source.
  std::vector<int32_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&rows](int32_t a, int32_t b) { return rows[a] < rows[b]; });
  std::vector<int32_t> sources, destinations;
  sources.reserve(rows.size());
  destinations.reserve(rows.size());
  for (size_t i = 0; i < order.size(); ++i) {
    if (i + 1 < order.size() && rows[order[i + 1]] == rows[order[i]]) continue;  // a later source follows
    sources.push_back(order[i]);
    destinations.push_back(rows[order[i]]);
  }
  const DeviceIndices device_sources(sources), device_rows(destinations);
  const auto total = static_cast<int64_t>(sources.size()) * width;
  scatter_rows_kernel<<<blocks_for(total), kThreads>>>(source.data(), device_sources.data(), device_rows.data(),
                                                       static_cast<int64_t>(sources.size()), width, out.data());
  TEMOE_CUDA_LAUNCHED("scatter_rows_kernel");
}

void CudaBackend::scatter_add_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_cuda_tensor(source, "scatter_add source");
  check_cuda_tensor(out, "scatter_add out");
  check_rank(out, 2, "scatter_add out");
  const int64_t count = out.dim(0), width = out.dim(1);
  check_shape(source, {static_cast<int64_t>(rows.size()), width}, "scatter_add source");
  check_rows(rows, count, "scatter_add");
  if (rows.empty() || width == 0) return;
  // Group the sources by destination (stable: ascending source index within a destination), so
  // that one block owns each destination row and adds in the CPU's order.
  std::vector<int32_t> sources(rows.size());
  std::iota(sources.begin(), sources.end(), 0);
  std::stable_sort(sources.begin(), sources.end(), [&rows](int32_t a, int32_t b) { return rows[a] < rows[b]; });
  std::vector<int32_t> destinations, offsets;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (i == 0 || rows[sources[i]] != rows[sources[i - 1]]) {
      destinations.push_back(rows[sources[i]]);
      offsets.push_back(static_cast<int32_t>(i));
    }
  }
  offsets.push_back(static_cast<int32_t>(sources.size()));
  const DeviceIndices device_sources(sources), device_destinations(destinations), device_offsets(offsets);
  scatter_add_rows_kernel<<<row_blocks(static_cast<int64_t>(destinations.size()), "scatter_add"), kThreads>>>(
      source.data(), device_destinations.data(), device_offsets.data(), device_sources.data(), width, out.data());
  TEMOE_CUDA_LAUNCHED("scatter_add_rows_kernel");
}

void CudaBackend::combine_slots(const Tensor& slots, const Tensor& weights, Tensor& out, bool accumulate) {
  check_cuda_tensor(slots, "combine slots");
  check_cuda_tensor(weights, "combine weights");
  check_cuda_tensor(out, "combine out");
  check_rank(weights, 2, "combine weights");
  check_rank(out, 2, "combine out");
  const int64_t tokens = weights.dim(0), slot_count = weights.dim(1), width = out.dim(1);
  check_shape(slots, {tokens * slot_count, width}, "combine slots");
  TEMOE_CHECK(out.dim(0) == tokens, "combine out has " << out.dim(0) << " rows for " << tokens << " tokens");
  if (tokens == 0 || width == 0) return;
  combine_slots_kernel<<<blocks_for(tokens * width), kThreads>>>(slots.data(), weights.data(), tokens, slot_count,
                                                                 width, accumulate, out.data());
  TEMOE_CUDA_LAUNCHED("combine_slots_kernel");
}

void CudaBackend::combine_slots_backward(const Tensor& slots, const Tensor& weights, const Tensor& grad_out,
                                         Tensor& grad_slots, Tensor& grad_weights) {
  check_cuda_tensor(slots, "combine_backward slots");
  check_cuda_tensor(weights, "combine_backward weights");
  check_cuda_tensor(grad_out, "combine_backward grad_out");
  check_cuda_tensor(grad_slots, "combine_backward grad_slots");
  check_cuda_tensor(grad_weights, "combine_backward grad_weights");
  check_rank(weights, 2, "combine_backward weights");
  check_rank(grad_out, 2, "combine_backward grad_out");
  const int64_t tokens = weights.dim(0), slot_count = weights.dim(1), width = grad_out.dim(1);
  check_shape(slots, {tokens * slot_count, width}, "combine_backward slots");
  check_shape(grad_out, {tokens, width}, "combine_backward grad_out");
  check_shape(grad_slots, slots.shape(), "combine_backward grad_slots");
  check_shape(grad_weights, weights.shape(), "combine_backward grad_weights");
  if (tokens * slot_count == 0) return;
  combine_slots_backward_kernel<<<row_blocks(tokens * slot_count, "combine_backward"), kThreads>>>(
      slots.data(), weights.data(), grad_out.data(), slot_count, width, grad_slots.data(), grad_weights.data());
  TEMOE_CUDA_LAUNCHED("combine_slots_backward_kernel");
}

}  // namespace temoe
