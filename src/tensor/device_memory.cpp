#include "src/tensor/device_memory.hpp"

#include <cstdlib>
#include <cstring>

#include "src/core/error.hpp"

namespace temoe {

namespace {
constexpr size_t kHostAlignment = 64;  // one cache line; also what AVX-512 loads like

#if !defined(TEMOE_WITH_CUDA)
[[noreturn]] void no_cuda() {
  TEMOE_FAIL("this temoe was built without the CUDA backend (configure with -DTEMOE_CUDA=ON on a "
             "machine with the CUDA toolkit)");
}
#endif
}  // namespace

std::shared_ptr<float> allocate_device_memory(Device device, size_t bytes) {
  if (device == Device::cuda) {
#if defined(TEMOE_WITH_CUDA)
    return allocate_cuda_memory(bytes);
#else
    no_cuda();
#endif
  }
  const size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  void* memory = std::aligned_alloc(kHostAlignment, rounded);
  if (memory == nullptr) TEMOE_FAIL("out of host memory allocating " << bytes << " bytes");
  return std::shared_ptr<float>(static_cast<float*>(memory), [](float* pointer) { std::free(pointer); });
}

void copy_device_memory(Device device, void* destination, const void* source, size_t bytes) {
  if (device == Device::cuda) {
#if defined(TEMOE_WITH_CUDA)
    copy_cuda_memory(destination, source, bytes);
    return;
#else
    no_cuda();
#endif
  }
  if (bytes) std::memcpy(destination, source, bytes);
}

void copy_to_host(Device device, void* host_destination, const void* source, size_t bytes) {
  if (device == Device::cuda) {
#if defined(TEMOE_WITH_CUDA)
    copy_cuda_to_host(host_destination, source, bytes);
    return;
#else
    no_cuda();
#endif
  }
  if (bytes) std::memcpy(host_destination, source, bytes);
}

}  // namespace temoe
