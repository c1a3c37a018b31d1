#pragma once
// Copies of tensors between host and device memory (uploading weights, reading results back).
// Only in builds with the CUDA backend.
#include "src/tensor/tensor.hpp"

namespace temoe {

// A deep copy of `tensor` in `device`'s memory (a clone when it is already there).
Tensor copy_to_device(const Tensor& tensor, Device device);

}  // namespace temoe
