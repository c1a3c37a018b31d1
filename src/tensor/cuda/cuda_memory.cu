// Device memory for the CUDA backend (declared in src/tensor/device_memory.hpp): blocks from the
// caching allocator, copies on the legacy default stream (ordered with every kernel the backend
// launches). Errors name the CUDA call, its error string and the size.
#include <cuda_runtime.h>

#include "src/tensor/cuda/caching_allocator.hpp"
#include "src/tensor/cuda/cuda_check.hpp"
#include "src/tensor/device_memory.hpp"

namespace temoe {

namespace {
void check_copy(cudaError_t status, const char* call, size_t bytes) {
  TEMOE_CHECK(status == cudaSuccess, call << " (" << bytes << " bytes) failed: " << cudaGetErrorName(status) << ": "
                                          << cudaGetErrorString(status));
}
}  // namespace

std::shared_ptr<float> allocate_cuda_memory(size_t bytes) {
  return std::shared_ptr<float>(static_cast<float*>(cuda_cached_allocate(bytes)),
                                [](float* pointer) { cuda_cached_free(pointer); });
}

void copy_cuda_memory(void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  // cudaMemcpyDefault: the source may be host memory (uploads) or device memory (clones).
  check_copy(cudaMemcpy(destination, source, bytes, cudaMemcpyDefault), "cudaMemcpy", bytes);
}

void copy_cuda_to_host(void* host_destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  check_copy(cudaMemcpy(host_destination, source, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host", bytes);
}

}  // namespace temoe
