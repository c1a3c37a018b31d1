#include "src/tensor/cuda/local_gpu.hpp"

#include "src/tensor/cuda/cuda_check.hpp"

namespace temoe {

int select_local_gpu(int local_rank, int local_ranks) {
  TEMOE_CHECK(local_ranks >= 1 && local_rank >= 0 && local_rank < local_ranks,
              "local rank " << local_rank << " of " << local_ranks << " ranks on this node is out of range");
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  TEMOE_CHECK(status == cudaSuccess && devices > 0,
              "local rank " << local_rank << ": no CUDA device is visible (cudaGetDeviceCount: "
                            << (status == cudaSuccess ? "0 devices" : cudaGetErrorString(status)) << ")");
  TEMOE_CHECK(local_ranks <= devices, "local rank " << local_rank << ": " << local_ranks
                                                    << " ranks on this node but only " << devices
                                                    << " GPUs; start at most one rank per GPU");
  TEMOE_CUDA_CALL(cudaSetDevice(local_rank));
  return local_rank;
}

}  // namespace temoe
