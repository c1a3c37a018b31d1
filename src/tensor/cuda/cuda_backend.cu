// Entry point of the CUDA backend. The kernels themselves are the GPU issue's work; until then a
// request for device 'cuda' fails with a clear message instead of silently running on the CPU.
#include "src/core/error.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

std::unique_ptr<Backend> make_cuda_backend() {
  TEMOE_FAIL("device 'cuda': the CUDA kernels are not implemented yet in this build (only device "
             "memory is); use device = cpu");
}

}  // namespace temoe
