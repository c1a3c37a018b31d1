#pragma once
// What runtime.device = cuda needs from the launcher before and after a model is loaded: the GPU
// this rank drives (one per rank, by local rank), and NCCL communicators bootstrapped over MPI for
// the exchanges of device memory (token dispatch, gradient sums).
#include <memory>

#include "parallel/communicator.hpp"
#include "src/tensor/device.hpp"

namespace temoe::launch {

// Makes this rank's GPU current (its local rank among the ranks of its node) before anything
// allocates on it. Does nothing for the CPU.
void select_rank_device(Device device);

// An NCCL communicator over the ranks of `bootstrap` (an MPI communicator), in the same order.
// Throws, naming the build, where temoe was built without CUDA.
std::unique_ptr<Communicator> make_device_communicator(Communicator& bootstrap, Device device);

}  // namespace temoe::launch
