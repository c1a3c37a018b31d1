// Device memory for the CUDA backend: plain cudaMalloc/cudaFree for now (the caching allocator and
// the kernels come with the GPU issue). Errors name the CUDA call and the size.
#include <cuda_runtime.h>

#include "src/core/error.hpp"
#include "src/tensor/device_memory.hpp"

namespace temoe {

namespace {
void check_cuda(cudaError_t status, const char* call, size_t bytes) {
  TEMOE_CHECK(status == cudaSuccess, call << " (" << bytes << " bytes) failed: " << cudaGetErrorString(status));
}
}  // namespace

std::shared_ptr<float> allocate_cuda_memory(size_t bytes) {
  void* memory = nullptr;
  check_cuda(cudaMalloc(&memory, bytes), "cudaMalloc", bytes);
  return std::shared_ptr<float>(static_cast<float*>(memory), [](float* pointer) { cudaFree(pointer); });
}

void copy_cuda_memory(void* destination, const void* source, size_t bytes) {
  check_cuda(cudaMemcpy(destination, source, bytes, cudaMemcpyDefault), "cudaMemcpy", bytes);
}

void copy_cuda_to_host(void* host_destination, const void* source, size_t bytes) {
  check_cuda(cudaMemcpy(host_destination, source, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host", bytes);
}

}  // namespace temoe
