// CudaBackend's causal grouped-query attention: the whole-sequence forward, the KV-cache forward
// and the backward. Straightforward kernels first (no tiling, no tensor cores): one block per
// (sequence, query position, head) holds that query's scores in shared memory, so a query may
// attend to as many keys as shared memory holds floats (about 57,000 on an H100).
//
// The arithmetic per query is the CPU backend's (cpu_backend.cpp): scores scaled by 1/sqrt(hd),
// max-subtracted exp, weights = exp / total, out = sum_j weight_j v_j in key order. Only the dot
// products' summation order (warp lanes) and expf's rounding differ.
#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

namespace {
using namespace cuda_kernels;

constexpr int kAttentionThreads = 128;
constexpr int kAttentionWarps = kAttentionThreads / kWarp;
constexpr int kBackwardChunk = 64;  // (head, query) pairs whose coefficients a key block stages at once

// Where rows live: element (b, position, head, i) of a [B, positions, heads, hd] tensor.
struct HeadLayout {
  int64_t positions = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  __device__ int64_t offset(int64_t b, int64_t position, int64_t head) const {
    return ((b * positions + position) * heads + head) * head_dim;
  }
};

// <a, b> over head_dim by one warp (lanes stride over the elements, then a fixed butterfly), so
// the forward and both backward kernels get the same bits for the same pair.
__device__ float warp_dot(const float* a, const float* b, int64_t head_dim) {
  float dot = 0.0f;
  for (int64_t i = threadIdx.x % kWarp; i < head_dim; i += kWarp) dot += a[i] * b[i];
  return warp_sum(dot);
}

// scores[j] = scale <query, key_j> for j < keys; then softmax statistics. Returns the maximum
// and leaves exp(score - max) in scores; *total gets their sum.
__device__ float softmax_numerators(const float* query, const float* k, HeadLayout k_layout, int64_t b,
                                    int64_t kv_head, int64_t keys, float scale, float* scores, float* scratch,
                                    float* total) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int64_t j = warp; j < keys; j += kAttentionWarps) {
    const float dot = warp_dot(query, k + k_layout.offset(b, j, kv_head), k_layout.head_dim);
    if (lane == 0) scores[j] = dot * scale;
  }
  __syncthreads();
  float maximum = -INFINITY;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) maximum = fmaxf(maximum, scores[j]);
  maximum = block_max(maximum, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const float weight = expf(scores[j] - maximum);
    scores[j] = weight;
    sum += weight;
  }
  *total = block_sum(sum, scratch);  // block_sum synchronises, so scores are visible afterwards
  return maximum;
}

// Block (b, s, h) of the grid (flattened): query s of sequence b at position first + s attends to
// cache positions 0 .. first + s. The whole-sequence forward is first = 0, capacity = time.
__global__ void attention_forward_kernel(const float* q, const float* k, const float* v, float* out, HeadLayout q_layout,
                                         HeadLayout kv_layout, int64_t first_position, int64_t group, float scale) {
  extern __shared__ float shared[];
  __shared__ float scratch[kWarp];
  const int64_t head_dim = q_layout.head_dim;
  float* query = shared;             // [head_dim]
  float* scores = shared + head_dim;  // [keys]
  const int64_t h = blockIdx.x % q_layout.heads;
  const int64_t s = (blockIdx.x / q_layout.heads) % q_layout.positions;
  const int64_t b = blockIdx.x / (q_layout.heads * q_layout.positions);
  const int64_t kv_head = h / group, keys = first_position + s + 1;
  const float* query_row = q + q_layout.offset(b, s, h);
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) query[i] = query_row[i];
  __syncthreads();
  float total = 0.0f;
  softmax_numerators(query, k, kv_layout, b, kv_head, keys, scale, scores, scratch, &total);
  float* result = out + q_layout.offset(b, s, h);
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float sum = 0.0f;
    for (int64_t j = 0; j < keys; ++j) sum += scores[j] / total * v[kv_layout.offset(b, j, kv_head) + i];
    result[i] = sum;
  }
}

// Backward, part 1: block (b, t, h) recomputes P_t, forms dS_tj = P_tj (dP_tj - sum_j P_tj dP_tj)
// with dP_tj = <dout_t, v_j>, writes dq_t = scale sum_j dS_tj k_j, and keeps the row's softmax
// statistics (max, total, expectation) for part 2.
__global__ void attention_backward_query_kernel(const float* q, const float* k, const float* v, const float* grad_out,
                                                float* grad_q, float* statistics, HeadLayout q_layout,
                                                HeadLayout kv_layout, int64_t group, float scale) {
  extern __shared__ float shared[];
  __shared__ float scratch[kWarp];
  __shared__ double scratch_double[kWarp];
  const int64_t head_dim = q_layout.head_dim, time = q_layout.positions;
  float* query = shared;                       // [head_dim]
  float* upstream = shared + head_dim;         // [head_dim]
  float* probabilities = shared + 2 * head_dim;  // [time]
  float* score_grads = probabilities + time;     // [time]
  const int64_t h = blockIdx.x % q_layout.heads;
  const int64_t t = (blockIdx.x / q_layout.heads) % time;
  const int64_t b = blockIdx.x / (q_layout.heads * time);
  const int64_t kv_head = h / group, keys = t + 1, row = q_layout.offset(b, t, h);
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    query[i] = q[row + i];
    upstream[i] = grad_out[row + i];
  }
  __syncthreads();
  float total = 0.0f;
  const float maximum = softmax_numerators(query, k, kv_layout, b, kv_head, keys, scale, probabilities, scratch, &total);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int64_t j = warp; j < keys; j += kAttentionWarps) {
    const float dot = warp_dot(upstream, v + kv_layout.offset(b, j, kv_head), head_dim);
    if (lane == 0) score_grads[j] = dot;
  }
  __syncthreads();
  double expected = 0.0;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    probabilities[j] /= total;
    expected += static_cast<double>(probabilities[j]) * score_grads[j];
  }
  const auto expectation = static_cast<float>(block_sum(expected, scratch_double));
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    score_grads[j] = probabilities[j] * (score_grads[j] - expectation) * scale;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float sum = 0.0f;
    for (int64_t j = 0; j < keys; ++j) sum += score_grads[j] * k[kv_layout.offset(b, j, kv_head) + i];
    grad_q[row + i] = sum;
  }
  if (threadIdx.x == 0) {
    float* row_statistics = statistics + 3 * blockIdx.x;
    row_statistics[0] = maximum;
    row_statistics[1] = total;
    row_statistics[2] = expectation;
  }
}

// Backward, part 2: block (b, j, kv_head) owns dk_j and dv_j and sums over every (h, t >= j) of
// its group, h outer and t ascending as the CPU does:
//   dk_j = sum dS_tj q_t,  dv_j = sum P_tj dout_t,
// recomputing P_tj and dS_tj from the statistics part 1 kept (same dot products, same bits).
__global__ void attention_backward_key_kernel(const float* q, const float* k, const float* v, const float* grad_out,
                                              const float* statistics, float* grad_k, float* grad_v,
                                              HeadLayout q_layout, HeadLayout kv_layout, int64_t group, float scale) {
  extern __shared__ float shared[];
  __shared__ float chunk_ds[kBackwardChunk], chunk_p[kBackwardChunk];
  __shared__ int64_t chunk_row[kBackwardChunk];
  const int64_t head_dim = q_layout.head_dim, time = q_layout.positions;
  float* key_sum = shared;               // [head_dim]: dk_j
  float* value_sum = shared + head_dim;  // [head_dim]: dv_j
  const int64_t kv_head = blockIdx.x % kv_layout.heads;
  const int64_t j = (blockIdx.x / kv_layout.heads) % time;
  const int64_t b = blockIdx.x / (kv_layout.heads * time);
  const float* key = k + kv_layout.offset(b, j, kv_head);
  const float* value = v + kv_layout.offset(b, j, kv_head);
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) key_sum[i] = value_sum[i] = 0.0f;
  const int64_t later = time - j, pairs = group * later;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int64_t start = 0; start < pairs; start += kBackwardChunk) {
    const int64_t chunk = pairs - start < kBackwardChunk ? pairs - start : kBackwardChunk;
    for (int64_t c = warp; c < chunk; c += kAttentionWarps) {
      const int64_t pair = start + c;
      const int64_t h = kv_head * group + pair / later, t = j + pair % later;
      const int64_t row = q_layout.offset(b, t, h);
      const float score = warp_dot(q + row, key, head_dim) * scale;
      const float upstream_dot = warp_dot(grad_out + row, value, head_dim);
      if (lane == 0) {
        const float* row_statistics = statistics + 3 * ((b * time + t) * q_layout.heads + h);
        const float p = expf(score - row_statistics[0]) / row_statistics[1];
        chunk_p[c] = p;
        chunk_ds[c] = p * (upstream_dot - row_statistics[2]) * scale;
        chunk_row[c] = row;
      }
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
      float key_total = key_sum[i], value_total = value_sum[i];
      for (int64_t c = 0; c < chunk; ++c) {
        key_total += chunk_ds[c] * q[chunk_row[c] + i];
        value_total += chunk_p[c] * grad_out[chunk_row[c] + i];
      }
      key_sum[i] = key_total;
      value_sum[i] = value_total;
    }
    __syncthreads();
  }
  float* key_grad = grad_k + kv_layout.offset(b, j, kv_head);
  float* value_grad = grad_v + kv_layout.offset(b, j, kv_head);
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    key_grad[i] = key_sum[i];
    value_grad[i] = value_sum[i];
  }
}

// Allows `kernel` `bytes` of dynamic shared memory, or throws naming what needs it.
template <typename Kernel>
void reserve_shared_memory(Kernel kernel, size_t bytes, const char* what, int64_t keys) {
  int device = 0, limit = 0;
  TEMOE_CUDA_CALL(cudaGetDevice(&device));
  TEMOE_CUDA_CALL(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attributes{};
  TEMOE_CUDA_CALL(cudaFuncGetAttributes(&attributes, kernel));  // its static shared memory counts too
  TEMOE_CHECK(bytes + attributes.sharedSizeBytes <= static_cast<size_t>(limit),
              what << ": " << keys << " keys need " << bytes << " bytes of shared memory per block, more than the "
                   << limit << " this GPU offers (the straightforward kernel holds a query's scores in shared "
                   << "memory; shorten the sequence)");
  TEMOE_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

unsigned int grid_size(int64_t blocks, const char* what) {
  TEMOE_CHECK(blocks <= 0x7fffffff, what << ": " << blocks << " blocks exceed one grid");
  return static_cast<unsigned int>(blocks);
}
}  // namespace

void CudaBackend::causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out) {
  check_cuda_tensor(q, "attention q");
  check_cuda_tensor(k, "attention k");
  check_cuda_tensor(v, "attention v");
  check_cuda_tensor(out, "attention out");
  check_rank(q, 4, "attention q");
  const int64_t batch = q.dim(0), time = q.dim(1), heads = q.dim(2), head_dim = q.dim(3);
  check_rank(k, 4, "attention k");
  const int64_t kv_heads = k.dim(2);
  check_shape(k, {batch, time, kv_heads, head_dim}, "attention k");
  check_shape(v, k.shape(), "attention v");
  check_shape(out, q.shape(), "attention out");
  TEMOE_CHECK(kv_heads > 0 && heads % kv_heads == 0,
              "attention: " << heads << " query heads are not a multiple of " << kv_heads << " kv heads");
  if (q.numel() == 0) return;
  const size_t bytes = static_cast<size_t>(head_dim + time) * sizeof(float);
  reserve_shared_memory(attention_forward_kernel, bytes, "attention", time);
  const HeadLayout q_layout{time, heads, head_dim}, kv_layout{time, kv_heads, head_dim};
  attention_forward_kernel<<<grid_size(batch * time * heads, "attention"), kAttentionThreads, bytes>>>(
      q.data(), k.data(), v.data(), out.data(), q_layout, kv_layout, 0, heads / kv_heads,
      1.0f / std::sqrt(static_cast<float>(head_dim)));
  TEMOE_CUDA_LAUNCHED("attention_forward_kernel");
}

void CudaBackend::cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                   int64_t first_position, Tensor& out) {
  check_cuda_tensor(q, "cached attention q");
  check_cuda_tensor(k_cache, "cached attention k_cache");
  check_cuda_tensor(v_cache, "cached attention v_cache");
  check_cuda_tensor(out, "cached attention out");
  const AttentionShape shape = check_cached_attention(q, k_cache, v_cache, first_position, out);
  const int64_t batch = shape.batch, time = shape.time, heads = shape.heads, head_dim = shape.head_dim;
  const int64_t capacity = shape.capacity, kv_heads = shape.kv_heads;
  if (q.numel() == 0) return;
  const int64_t keys = first_position + time;
  const size_t bytes = static_cast<size_t>(head_dim + keys) * sizeof(float);
  reserve_shared_memory(attention_forward_kernel, bytes, "cached attention", keys);
  const HeadLayout q_layout{time, heads, head_dim}, kv_layout{capacity, kv_heads, head_dim};
  attention_forward_kernel<<<grid_size(batch * time * heads, "cached attention"), kAttentionThreads, bytes>>>(
      q.data(), k_cache.data(), v_cache.data(), out.data(), q_layout, kv_layout, first_position, heads / kv_heads,
      1.0f / std::sqrt(static_cast<float>(head_dim)));
  TEMOE_CUDA_LAUNCHED("attention_forward_kernel (cached)");
}

void CudaBackend::causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                            Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  check_cuda_tensor(q, "attention_backward q");
  check_cuda_tensor(k, "attention_backward k");
  check_cuda_tensor(v, "attention_backward v");
  check_cuda_tensor(grad_out, "attention_backward grad_out");
  check_cuda_tensor(grad_q, "attention_backward grad_q");
  check_cuda_tensor(grad_k, "attention_backward grad_k");
  check_cuda_tensor(grad_v, "attention_backward grad_v");
  const AttentionShape shape = check_attention_backward(q, k, v, grad_out, grad_q, grad_k, grad_v);
  const int64_t batch = shape.batch, time = shape.time, heads = shape.heads, head_dim = shape.head_dim;
  const int64_t kv_heads = shape.kv_heads;
  if (q.numel() == 0) return;
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const HeadLayout q_layout{time, heads, head_dim}, kv_layout{time, kv_heads, head_dim};
  DeviceScratch<float> statistics(static_cast<size_t>(3 * batch * time * heads));
  const size_t query_bytes = static_cast<size_t>(2 * head_dim + 2 * time) * sizeof(float);
  reserve_shared_memory(attention_backward_query_kernel, query_bytes, "attention_backward", time);
  attention_backward_query_kernel<<<grid_size(batch * time * heads, "attention_backward"), kAttentionThreads,
                                    query_bytes>>>(q.data(), k.data(), v.data(), grad_out.data(), grad_q.data(),
                                                   statistics.data(), q_layout, kv_layout, group, scale);
  TEMOE_CUDA_LAUNCHED("attention_backward_query_kernel");
  const size_t key_bytes = static_cast<size_t>(2 * head_dim) * sizeof(float);
  reserve_shared_memory(attention_backward_key_kernel, key_bytes, "attention_backward", time);
  attention_backward_key_kernel<<<grid_size(batch * time * kv_heads, "attention_backward"), kAttentionThreads,
                                  key_bytes>>>(q.data(), k.data(), v.data(), grad_out.data(), statistics.data(),
                                               grad_k.data(), grad_v.data(), q_layout, kv_layout, group, scale);
  TEMOE_CUDA_LAUNCHED("attention_backward_key_kernel");
}

}  // namespace temoe
