#pragma once
// Pieces shared by the CUDA backend's kernels: launch geometry, warp and block reductions, and
// device copies of host index arrays. Included by the .cu files only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>

#include "src/core/error.hpp"
#include "src/tensor/cuda/cuda_check.hpp"
#include "src/tensor/device_memory.hpp"

namespace temoe::cuda_kernels {

inline constexpr int kThreads = 256;     // threads per block of the element-wise and row kernels
inline constexpr int kWarp = 32;

// Blocks of kThreads covering `count` elements (at least one, so that a launch is always valid;
// kernels bound-check).
inline unsigned int blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  TEMOE_CHECK(blocks <= 0x7fffffff, "CUDA launch: " << count << " elements exceed one grid");
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks);
}

// A grid dimension for `count` rows (one block each).
inline unsigned int row_blocks(int64_t count, const char* kernel) {
  TEMOE_CHECK(count <= 0x7fffffff, kernel << ": " << count << " rows exceed one grid");
  return static_cast<unsigned int>(count);
}

template <typename T>
__device__ inline T warp_sum(T value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ inline float warp_max(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values. Fixed tree order, so repeated runs are bit-identical.
template <typename T>
__device__ inline T block_sum(T value, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  value = warp_sum(value);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : T(0);
  return warp_sum(value);
}

__device__ inline float block_max(float value, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  value = warp_max(value);
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(value);
}

// A device copy of a host array (row indices, targets, mask flags), from the caching allocator.
// The copy is queued on the default stream before any kernel that reads it; the block goes back
// to the cache when this object dies, which is safe because its next user is queued after those
// kernels.
template <typename T>
class DeviceCopy {
 public:
  explicit DeviceCopy(std::span<const T> host)
      : size_(host.size()), memory_(allocate_cuda_memory(std::max<size_t>(host.size(), 1) * sizeof(T))) {
    copy_cuda_memory(memory_.get(), host.data(), host.size() * sizeof(T));
  }
  const T* data() const { return reinterpret_cast<const T*>(memory_.get()); }
  size_t size() const { return size_; }

 private:
  size_t size_;
  std::shared_ptr<float> memory_;
};
using DeviceIndices = DeviceCopy<int32_t>;

// Scratch device memory of `count` elements of T, from the caching allocator.
template <typename T>
class DeviceScratch {
 public:
  explicit DeviceScratch(size_t count) : memory_(allocate_cuda_memory(std::max<size_t>(count, 1) * sizeof(T))) {}
  T* data() { return reinterpret_cast<T*>(memory_.get()); }

 private:
  std::shared_ptr<float> memory_;
};

}  // namespace temoe::cuda_kernels
