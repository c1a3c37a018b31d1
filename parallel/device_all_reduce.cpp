#include "parallel/device_all_reduce.hpp"

#include "src/core/error.hpp"
#include "src/tensor/device_memory.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

void all_reduce_sum_on_device(Communicator& device_communicator, Device device, std::span<float> values) {
  TEMOE_CHECK(device != Device::cpu, "rank " << device_communicator.rank()
                                             << ": all_reduce_sum_on_device needs a device, got cpu (use all_reduce_sum)");
  if (values.empty()) return;
  Tensor buffer({static_cast<int64_t>(values.size())}, device);
  copy_device_memory(device, buffer.data(), values.data(), values.size_bytes());
  device_communicator.all_reduce_sum(std::span<float>(buffer.data(), values.size()));
  copy_to_host(device, values.data(), buffer.data(), values.size_bytes());
}

}  // namespace temoe
