#pragma once
// One CUDA thread per index of a controller_kernel_rows.hpp functor, on the default stream (the
// stream every other kernel of the CUDA backend runs on, so the order of the calls is kept).
// Defined in controller_kernels.cu for each functor controller_kernels.cpp launches.
#include <cstdint>

namespace temoe::controller_kernels {

template <typename Body>
void launch_on_cuda(const Body& body, int64_t count, const char* name);

}  // namespace temoe::controller_kernels
