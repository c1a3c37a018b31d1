#pragma once
// The one place that knows how each device allocates and copies memory.
#include <cstddef>
#include <memory>

#include "src/tensor/device.hpp"

namespace temoe {

std::shared_ptr<float> allocate_device_memory(Device device, size_t bytes);
void copy_device_memory(Device device, void* destination, const void* source, size_t bytes);
void copy_to_host(Device device, void* host_destination, const void* source, size_t bytes);

#if defined(TEMOE_WITH_CUDA)
// Implemented in src/tensor/cuda/ (the CUDA backend issue); declared here so the seam is visible.
std::shared_ptr<float> allocate_cuda_memory(size_t bytes);
void copy_cuda_memory(void* destination, const void* source, size_t bytes);
void copy_cuda_to_host(void* host_destination, const void* source, size_t bytes);
#endif

}  // namespace temoe
