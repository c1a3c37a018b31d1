#pragma once
// The NCCL implementation of Communicator, for device memory: every span it is given points to
// GPU memory. Bootstrapped over MPI (rank 0 creates the unique id and broadcasts it); each rank
// drives the GPU chosen by its local rank. Compiled only with the CUDA backend.
#include <memory>

#include "parallel/communicator.hpp"

namespace temoe {

// Makes GPU `local_rank` current (select_local_gpu, src/tensor/cuda/local_gpu.hpp). `bootstrap` is the host communicator over the same ranks (an MpiCommunicator).
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int local_rank, int local_ranks);

// Number of CUDA devices visible to this process (0 without a driver or a GPU).
int cuda_device_count();

}  // namespace temoe
