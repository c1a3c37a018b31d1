#include "src/tensor/cuda/caching_allocator.hpp"

#include <bit>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "src/tensor/cuda/cuda_check.hpp"

namespace temoe {

namespace {

constexpr size_t kMinimumBlock = 512;

class CachingAllocator {
 public:
  void* allocate(size_t bytes) {
    const size_t size = cuda_allocation_size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto bucket = free_.find(size);
    if (bucket != free_.end() && !bucket->second.empty()) {
      void* block = bucket->second.back();
      bucket->second.pop_back();
      statistics_.cached_bytes -= size;
      return hand_out(block, size);
    }
    void* block = nullptr;
    cudaError_t status = cudaMalloc(&block, size);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-free error before retrying
      release_locked();
      status = cudaMalloc(&block, size);
    }
    TEMOE_CHECK(status == cudaSuccess, "cudaMalloc of " << bytes << " bytes (size class " << size << ") failed: "
                                                        << cudaGetErrorName(status) << ": " << cudaGetErrorString(status)
                                                        << "; " << statistics_.allocated_bytes
                                                        << " bytes are in use by tensors");
    ++statistics_.cuda_mallocs;
    return hand_out(block, size);
  }

  void free(void* block) {
    if (block == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = sizes_.find(block);
    TEMOE_CHECK(found != sizes_.end(), "cuda_cached_free of a pointer the caching allocator did not hand out");
    const size_t size = found->second;
    sizes_.erase(found);
    statistics_.allocated_bytes -= size;
    statistics_.cached_bytes += size;
    free_[size].push_back(block);
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_locked();
  }

  CachingAllocatorStatistics statistics() {
    std::lock_guard<std::mutex> lock(mutex_);
    return statistics_;
  }

 private:
  void* hand_out(void* block, size_t size) {
    sizes_.emplace(block, size);
    statistics_.allocated_bytes += size;
    return block;
  }

  void release_locked() {
    for (auto& [size, blocks] : free_) {
      for (void* block : blocks) TEMOE_CUDA_CALL(cudaFree(block));
      statistics_.cached_bytes -= size * blocks.size();
      blocks.clear();
    }
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;   // size class -> blocks ready for reuse
  std::unordered_map<void*, size_t> sizes_;     // block handed out -> its size class
  CachingAllocatorStatistics statistics_;
};

// Never destroyed: tensors in static objects may be released after any other static destructor,
// and the process's exit returns the device memory anyway.
CachingAllocator& allocator() {
  static auto* instance = new CachingAllocator();
  return *instance;
}

}  // namespace

size_t cuda_allocation_size_class(size_t bytes) {
  if (bytes <= kMinimumBlock) return kMinimumBlock;
  // bytes lies in (2^e, 2^(e+1)]; step through the quarters of the octave above 2^e.
  const int exponent = static_cast<int>(std::bit_width(bytes - 1)) - 1;  // 2^exponent < bytes
  const size_t quarter = (size_t{1} << exponent) / 4;
  return (bytes + quarter - 1) / quarter * quarter;
}

void* cuda_cached_allocate(size_t bytes) { return allocator().allocate(bytes); }
void cuda_cached_free(void* pointer) { allocator().free(pointer); }
void cuda_release_cached_memory() { allocator().release(); }
CachingAllocatorStatistics cuda_allocator_statistics() { return allocator().statistics(); }

}  // namespace temoe
