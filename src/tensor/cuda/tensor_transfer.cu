#include "src/tensor/cuda/tensor_transfer.hpp"

#include "src/tensor/device_memory.hpp"

namespace temoe {

Tensor copy_to_device(const Tensor& tensor, Device device) {
  if (tensor.device() == device) return tensor.clone();
  Tensor copy(tensor.shape(), device);
  const size_t bytes = static_cast<size_t>(tensor.numel()) * sizeof(float);
  if (device == Device::cuda) {
    copy_cuda_memory(copy.data(), tensor.data(), bytes);  // cudaMemcpyDefault: host to device
  } else {
    copy_cuda_to_host(copy.data(), tensor.data(), bytes);
  }
  return copy;
}

}  // namespace temoe
