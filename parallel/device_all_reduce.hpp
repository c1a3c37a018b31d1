#pragma once
// Host values summed over the ranks of a communicator that moves device memory only (NCCL): they
// are uploaded to `device`, reduced there and copied back. For the controllers' gradients, which
// live on the host (src/learner/option_controller.hpp) while runtime.device = cuda puts the
// communication on NCCL.
#include <span>

#include "parallel/communicator.hpp"
#include "src/tensor/device.hpp"

namespace temoe {

void all_reduce_sum_on_device(Communicator& device_communicator, Device device, std::span<float> values);

}  // namespace temoe
