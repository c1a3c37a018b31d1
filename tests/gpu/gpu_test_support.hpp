#pragma once
// Shared pieces of the GPU tests: the skip where no device is usable (as on the build machines),
// random host tensors, uploads, and the CPU-reference comparison.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "src/tensor/backend.hpp"
#include "src/tensor/cuda/tensor_transfer.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe::testing {

// Empty when a CUDA device is usable; otherwise why not, for the skip message.
inline std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    return std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(status) + ")";
  }
  if (count == 0) return "no CUDA device on this machine";
  return {};
}

#define TEMOE_SKIP_WITHOUT_CUDA()                                                                            \
  do {                                                                                                       \
    if (const std::string temoe_reason_ = ::temoe::testing::cuda_unavailable_reason(); !temoe_reason_.empty()) \
      GTEST_SKIP() << temoe_reason_ << "; the GPU tests run with `ctest -L gpu` on a machine with a GPU";    \
  } while (0)

// A CPU and a CUDA backend, for kernels checked against the CPU's; skips without a device.
class CpuAndCudaBackends : public ::testing::Test {
 protected:
  void SetUp() override {
    TEMOE_SKIP_WITHOUT_CUDA();
    cpu_ = make_backend(Device::cpu);
    gpu_ = make_backend(Device::cuda);
  }
  std::unique_ptr<Backend> cpu_, gpu_;
};

// Host tensor of normal(0, deviation) values.
inline Tensor random_tensor(Shape shape, uint64_t seed, float deviation = 1.0f) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> normal(0.0f, deviation);
  std::vector<float> values(static_cast<size_t>(element_count(shape)));
  for (float& value : values) value = normal(engine);
  return Tensor::from_vector(std::move(shape), values);
}

inline Tensor to_cuda(const Tensor& host) { return copy_to_device(host, Device::cuda); }

// The relative error of `actual` against `expected`: max |a - e| over max |e| (the worst element
// against the tensor's scale, so that near-zero elements do not dominate). NaN anywhere fails.
inline ::testing::AssertionResult close_to(const Tensor& actual, const Tensor& expected, double tolerance) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shape " << shape_string(actual.shape()) << " vs expected "
                                         << shape_string(expected.shape());
  }
  const std::vector<float> a = actual.to_vector(), e = expected.to_vector();
  double worst = 0.0, scale = 0.0;
  size_t worst_index = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(e[i])) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs expected " << e[i];
    }
    if (std::isnan(e[i])) continue;
    const double difference = std::fabs(static_cast<double>(a[i]) - e[i]);
    if (difference > worst) {
      worst = difference;
      worst_index = i;
    }
    scale = std::max(scale, std::fabs(static_cast<double>(e[i])));
  }
  const double relative = scale > 0.0 ? worst / scale : worst;
  if (relative <= tolerance) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << relative << " > " << tolerance << " at element "
                                       << worst_index << ": " << a[worst_index] << " vs expected " << e[worst_index]
                                       << " (scale " << scale << ")";
}

}  // namespace temoe::testing
