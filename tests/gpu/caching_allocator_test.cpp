// The CUDA caching allocator (size classes, reuse, release) and the local-GPU selection's
// errors. The size classes and the no-device error are checked on every machine; the rest needs
// a GPU.
#include <gtest/gtest.h>

#include "src/tensor/cuda/caching_allocator.hpp"
#include "src/tensor/cuda/local_gpu.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

TEST(CachingAllocatorSizeClasses, RoundUpByAtMostAQuarter) {
  EXPECT_EQ(cuda_allocation_size_class(1), 512u);
  EXPECT_EQ(cuda_allocation_size_class(512), 512u);
  EXPECT_EQ(cuda_allocation_size_class(513), 640u);
  EXPECT_EQ(cuda_allocation_size_class(1024), 1024u);
  EXPECT_EQ(cuda_allocation_size_class(1025), 1280u);
  for (size_t bytes = 600; bytes < (size_t{1} << 30); bytes = bytes * 3 / 2 + 7) {
    const size_t size = cuda_allocation_size_class(bytes);
    EXPECT_GE(size, bytes);
    EXPECT_LE(size, bytes + bytes / 4) << bytes;
    EXPECT_EQ(cuda_allocation_size_class(size), size) << "a class is its own class";
  }
}

TEST(LocalGpu, MoreRanksThanGpusIsAClearError) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  try {
    select_local_gpu(0, devices + 1);
    FAIL() << "selection succeeded with " << devices + 1 << " ranks for " << devices << " GPUs";
  } catch (const std::exception& error) {
    const std::string message = error.what();
    if (devices == 0) {
      EXPECT_NE(message.find("no CUDA device is visible"), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find(std::to_string(devices + 1) + " ranks on this node but only " + std::to_string(devices) + " GPUs"),
                std::string::npos)
          << message;
    }
  }
}

TEST(CachingAllocator, ReusesFreedBlocksAndReleasesThem) {
  TEMOE_SKIP_WITHOUT_CUDA();
  cuda_release_cached_memory();
  const CachingAllocatorStatistics before = cuda_allocator_statistics();
  void* first = cuda_cached_allocate(1000);
  cuda_cached_free(first);
  void* second = cuda_cached_allocate(900);  // the same size class (1024)
  EXPECT_EQ(second, first);
  EXPECT_EQ(cuda_allocator_statistics().cuda_mallocs, before.cuda_mallocs + 1);
  cuda_cached_free(second);
  EXPECT_EQ(cuda_allocator_statistics().cached_bytes, before.cached_bytes + 1024);
  cuda_release_cached_memory();
  EXPECT_EQ(cuda_allocator_statistics().cached_bytes, 0u);
}

}  // namespace
}  // namespace temoe
