#include "launch/device_session.hpp"

#include "launch/process_environment.hpp"
#include "src/core/error.hpp"

#if defined(TEMOE_WITH_CUDA)
#include "parallel/nccl_communicator.hpp"
#include "src/tensor/cuda/local_gpu.hpp"
#endif

namespace temoe::launch {

void select_rank_device(Device device) {
  if (device == Device::cpu) return;
#if defined(TEMOE_WITH_CUDA)
  const ProcessEnvironment environment = ProcessEnvironment::from_environment();
  select_local_gpu(environment.local_rank, environment.local_size);
#else
  TEMOE_FAIL("runtime.device = " << to_string(device) << ": this temoe was built without the CUDA backend "
                                 "(configure with -DTEMOE_CUDA=ON)");
#endif
}

std::unique_ptr<Communicator> make_device_communicator(Communicator& bootstrap, Device device) {
  TEMOE_CHECK(device != Device::cpu, "rank " << bootstrap.rank() << ": a device communicator for the cpu device");
#if defined(TEMOE_WITH_CUDA)
  const ProcessEnvironment environment = ProcessEnvironment::from_environment();
  return make_nccl_communicator(bootstrap, environment.local_rank, environment.local_size);
#else
  TEMOE_FAIL("rank " << bootstrap.rank() << ": runtime.device = " << to_string(device)
                     << " needs NCCL, and this temoe was built without the CUDA backend (configure with -DTEMOE_CUDA=ON)");
#endif
}

}  // namespace temoe::launch
