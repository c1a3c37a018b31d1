#pragma once
// Device memory for the CUDA backend: cudaMalloc behind size-bucketed free lists, so that the
// many short-lived activation tensors of a forward reuse blocks instead of paying cudaMalloc /
// cudaFree (which synchronise the device) every time. No managed memory.
//
// Stream safety: every kernel and copy of the backend runs on the legacy default stream, so a
// block handed out again is only touched by work queued after the work that used it before.
#include <cstddef>

namespace temoe {

struct CachingAllocatorStatistics {
  size_t allocated_bytes = 0;  // in blocks handed out now (rounded sizes)
  size_t cached_bytes = 0;     // in blocks waiting on the free lists
  size_t cuda_mallocs = 0;     // cudaMalloc calls so far
};

// A block of at least `bytes` bytes (rounded up to a size class); never null.
void* cuda_cached_allocate(size_t bytes);
// Returns a block from cuda_cached_allocate to its free list.
void cuda_cached_free(void* pointer);
// cudaFree of every cached block (done automatically once when cudaMalloc runs out of memory).
void cuda_release_cached_memory();
CachingAllocatorStatistics cuda_allocator_statistics();

// The size class of a request: the smallest m * 2^e >= bytes with m in {4, 5, 6, 7} (at most 25%
// waste), and at least 512 bytes. Exposed for tests.
size_t cuda_allocation_size_class(size_t bytes);

}  // namespace temoe
