#pragma once
// Checks for CUDA runtime and cuBLAS return codes in the CUDA backend: a failure throws
// temoe::Error with file:line (from TEMOE_CHECK), the call's text and the library's own error
// string. main() adds the MPI rank. NCCL's checks live beside the NCCL communicator.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "src/core/error.hpp"

#define TEMOE_CUDA_CALL(call)                                                                   \
  do {                                                                                          \
    const cudaError_t temoe_cuda_status_ = (call);                                              \
    TEMOE_CHECK(temoe_cuda_status_ == cudaSuccess,                                              \
                #call << " failed: " << cudaGetErrorName(temoe_cuda_status_) << ": "           \
                      << cudaGetErrorString(temoe_cuda_status_));                               \
  } while (0)

#define TEMOE_CUBLAS_CALL(call)                                                                 \
  do {                                                                                          \
    const cublasStatus_t temoe_cublas_status_ = (call);                                         \
    TEMOE_CHECK(temoe_cublas_status_ == CUBLAS_STATUS_SUCCESS,                                  \
                #call << " failed: " << cublasGetStatusName(temoe_cublas_status_) << ": "      \
                      << cublasGetStatusString(temoe_cublas_status_));                          \
  } while (0)

// After a kernel launch: launch errors (bad configuration, no device) surface here, naming the
// kernel. Faults inside the kernel surface at the next synchronising call.
#define TEMOE_CUDA_LAUNCHED(kernel_name)                                                        \
  do {                                                                                          \
    const cudaError_t temoe_cuda_status_ = cudaGetLastError();                                  \
    TEMOE_CHECK(temoe_cuda_status_ == cudaSuccess,                                              \
                "launching CUDA kernel " << kernel_name << " failed: "                          \
                                         << cudaGetErrorName(temoe_cuda_status_) << ": "        \
                                         << cudaGetErrorString(temoe_cuda_status_));            \
  } while (0)
