// The controllers' and learner's row functors (src/learner/controller_kernel_rows.hpp) as CUDA
// kernels: each thread computes one index exactly as the host loop of controller_kernels.cpp
// does. The functors hold only device pointers and sizes, so they go to the kernel by value.
#include "src/learner/controller_kernel_rows.hpp"
#include "src/learner/cuda/controller_kernel_launch.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"

namespace temoe::controller_kernels {

namespace {

template <typename Body>
__global__ void each_index(Body body, int64_t count) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index < count) body(index);
}

}  // namespace

template <typename Body>
void launch_on_cuda(const Body& body, int64_t count, const char* name) {
  // The row functions keep per-row state in registers and local memory: fewer threads per block
  // than the element-wise kernels, so that long rows do not run out of registers.
  constexpr int kRowThreads = 64;
  const int64_t blocks = (count + kRowThreads - 1) / kRowThreads;
  TEMOE_CHECK(blocks <= 0x7fffffff, name << ": " << count << " rows exceed one grid");
  each_index<<<static_cast<unsigned int>(blocks), kRowThreads>>>(body, count);
  TEMOE_CUDA_LAUNCHED(name);
}

template void launch_on_cuda<RouterCoverageRow>(const RouterCoverageRow&, int64_t, const char*);
template void launch_on_cuda<HeadsForwardRow>(const HeadsForwardRow&, int64_t, const char*);
template void launch_on_cuda<HeadsBackwardRow>(const HeadsBackwardRow&, int64_t, const char*);
template void launch_on_cuda<HeadWeightGradientElement>(const HeadWeightGradientElement&, int64_t, const char*);
template void launch_on_cuda<SetEncodingGradientElement>(const SetEncodingGradientElement&, int64_t, const char*);
template void launch_on_cuda<OptionValueTargetsRow>(const OptionValueTargetsRow&, int64_t, const char*);
template void launch_on_cuda<PlackettLuceRow>(const PlackettLuceRow&, int64_t, const char*);
template void launch_on_cuda<DecideRow>(const DecideRow&, int64_t, const char*);
template void launch_on_cuda<TargetTermsRow>(const TargetTermsRow&, int64_t, const char*);
template void launch_on_cuda<GradientTermsRow>(const GradientTermsRow&, int64_t, const char*);
template void launch_on_cuda<ColumnSumElement>(const ColumnSumElement&, int64_t, const char*);

}  // namespace temoe::controller_kernels
