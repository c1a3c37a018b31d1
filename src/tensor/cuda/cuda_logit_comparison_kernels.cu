// CudaBackend::compare_logits (backend.hpp): the self-distillation scores of two logit matrices,
// one block per row, in double as on the CPU (cpu_backend_logit_comparison.cpp). Only the order
// of the row sums differs, so the scores agree to ~1e-15 relative; the argmaxes exactly.
#include <vector>

#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_kernel_support.cuh"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

namespace {
using namespace cuda_kernels;

struct Best {
  float value;
  int32_t index;
};

// max_element's answer: the largest value, the lowest index among equals.
__device__ inline Best better(Best a, Best b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ Best block_argmax(Best best, Best* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    best = better(best, Best{__shfl_xor_sync(0xffffffffu, best.value, offset),
                             __shfl_xor_sync(0xffffffffu, best.index, offset)});
  }
  __syncthreads();
  if (lane == 0) scratch[warp] = best;
  __syncthreads();
  best = lane < warps ? scratch[lane] : Best{-INFINITY, 0x7fffffff};
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    best = better(best, Best{__shfl_xor_sync(0xffffffffu, best.value, offset),
                             __shfl_xor_sync(0xffffffffu, best.index, offset)});
  }
  return best;
}

// The log-softmax normaliser max + log(sum exp(x - max)) of one row, in double, and its argmax.
__device__ double row_normaliser(const float* row, int64_t width, Best& top, Best* best_scratch,
                                 double* sum_scratch) {
  Best best{-INFINITY, 0x7fffffff};
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) best = better(best, Best{row[i], static_cast<int32_t>(i)});
  top = block_argmax(best, best_scratch);
  const double maximum = top.value;
  double total = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) total += exp(static_cast<double>(row[i]) - maximum);
  return maximum + log(block_sum(total, sum_scratch));
}

__global__ void compare_logits_kernel(const float* teacher, const float* student, const int32_t* targets, int64_t width,
                                      double* log_ratio, double* kl, int32_t* teacher_top, int32_t* student_top) {
  __shared__ Best best_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  const int64_t row = blockIdx.x;
  const float* t_row = teacher + row * width;
  const float* s_row = student + row * width;
  Best t_best{}, s_best{};
  const double t_norm = row_normaliser(t_row, width, t_best, best_scratch, sum_scratch);
  const double s_norm = row_normaliser(s_row, width, s_best, best_scratch, sum_scratch);
  double divergence = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const double t = static_cast<double>(t_row[i]) - t_norm, s = static_cast<double>(s_row[i]) - s_norm;
    divergence += exp(t) * (t - s);
  }
  divergence = block_sum(divergence, sum_scratch);
  if (threadIdx.x == 0) {
    const int32_t target = targets[row];
    log_ratio[row] = (static_cast<double>(t_row[target]) - t_norm) - (static_cast<double>(s_row[target]) - s_norm);
    kl[row] = divergence;
    teacher_top[row] = t_best.index;
    student_top[row] = s_best.index;
  }
}

}  // namespace

void CudaBackend::compare_logits(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                                 const LogitComparison& out) {
  check_cuda_tensor(teacher, "compare_logits teacher");
  check_cuda_tensor(student, "compare_logits student");
  check_logit_comparison(teacher, student, targets, out.target_log_ratio, out.kl, out.teacher_top, out.student_top);
  const int64_t rows = teacher.dim(0);
  if (rows == 0) return;
  const auto count = static_cast<size_t>(rows);
  const DeviceIndices device_targets(targets);
  DeviceScratch<double> scores(2 * count);
  DeviceScratch<int32_t> tops(2 * count);
  compare_logits_kernel<<<row_blocks(rows, "compare_logits"), kThreads>>>(
      teacher.data(), student.data(), device_targets.data(), teacher.dim(1), scores.data(), scores.data() + count,
      tops.data(), tops.data() + count);
  TEMOE_CUDA_LAUNCHED("compare_logits_kernel");
  // Four numbers per row leave the device; the logits stay (this waits for the kernel).
  std::vector<double> host_scores(2 * count);
  std::vector<int32_t> host_tops(2 * count);
  copy_cuda_to_host(host_scores.data(), scores.data(), host_scores.size() * sizeof(double));
  copy_cuda_to_host(host_tops.data(), tops.data(), host_tops.size() * sizeof(int32_t));
  std::copy_n(host_scores.begin(), count, out.target_log_ratio.begin());
  std::copy_n(host_scores.begin() + static_cast<std::ptrdiff_t>(count), count, out.kl.begin());
  std::copy_n(host_tops.begin(), count, out.teacher_top.begin());
  std::copy_n(host_tops.begin() + static_cast<std::ptrdiff_t>(count), count, out.student_top.begin());
}

}  // namespace temoe
