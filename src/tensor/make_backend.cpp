#include "src/core/error.hpp"
#include "src/tensor/backend.hpp"
#include "src/tensor/cpu_backend.hpp"

namespace temoe {

#if defined(TEMOE_WITH_CUDA)
std::unique_ptr<Backend> make_cuda_backend();  // src/tensor/cuda/ (the GPU issue)
#endif

void Backend::refuse(const std::string& operation) const {
  TEMOE_FAIL(operation << " is not implemented on the " << to_string(device())
                       << " backend; run this model with runtime.device=cpu");
}

std::unique_ptr<Backend> make_backend(Device device) {
  if (device == Device::cpu) return std::make_unique<CpuBackend>();
#if defined(TEMOE_WITH_CUDA)
  return make_cuda_backend();
#else
  TEMOE_FAIL("device 'cuda' requested, but this temoe was built without the CUDA backend");
#endif
}

}  // namespace temoe
