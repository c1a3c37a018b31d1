// Entry point of the CUDA backend: the cuBLAS handle's lifetime and the device check every
// method makes. The kernels are in the files named in cuda_backend.hpp.
#include "src/tensor/cuda/cuda_backend.hpp"

#include "src/tensor/cuda/cuda_check.hpp"

namespace temoe {

CudaBackend::CudaBackend() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  TEMOE_CHECK(status == cudaSuccess && devices > 0,
              "device 'cuda': no CUDA device is usable here (cudaGetDeviceCount: "
                  << (status == cudaSuccess ? "0 devices" : cudaGetErrorString(status)) << "); use device = cpu");
  TEMOE_CUBLAS_CALL(cublasCreate(&cublas_));
  // Plain fp32 arithmetic: TF32 tensor cores would miss the CPU reference by far more than the
  // 1e-4 the GPU tests allow. (NVIDIA_TF32_OVERRIDE=1 in the environment would still force TF32.)
  TEMOE_CUBLAS_CALL(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  TEMOE_CUBLAS_CALL(cublasSetStream(cublas_, nullptr));  // the legacy default stream, as every kernel
}

CudaBackend::~CudaBackend() {
  if (cublas_ != nullptr) cublasDestroy(cublas_);
}

void check_cuda_tensor(const Tensor& tensor, const char* what) {
  TEMOE_CHECK(tensor.device() == Device::cuda, what << " is on " << to_string(tensor.device())
                                                    << ", the CUDA backend needs device tensors");
}

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace temoe
