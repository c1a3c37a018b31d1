// CpuBackend::compare_logits (backend.hpp): the self-distillation scores of two logit matrices,
// row by row in double. The reference the CUDA kernel (cuda_logit_comparison_kernels.cu) is
// tested against.
#include <algorithm>
#include <cmath>
#include <vector>

#include "src/tensor/cpu_backend.hpp"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {

namespace {
// log-softmax of one row in double.
void log_softmax(const float* logits, int64_t width, std::vector<double>& out) {
  const double maximum = *std::max_element(logits, logits + width);
  double total = 0;
  for (int64_t i = 0; i < width; ++i) total += std::exp(double(logits[i]) - maximum);
  const double normaliser = maximum + std::log(total);
  for (int64_t i = 0; i < width; ++i) out[static_cast<size_t>(i)] = double(logits[i]) - normaliser;
}
}  // namespace

void CpuBackend::compare_logits(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                                const LogitComparison& out) {
  check_host(teacher, "compare_logits teacher");
  check_host(student, "compare_logits student");
  check_logit_comparison(teacher, student, targets, out.target_log_ratio, out.kl, out.teacher_top, out.student_top);
  const int64_t count = teacher.dim(0), vocabulary = teacher.dim(1);
#pragma omp parallel if (count * vocabulary >= kCpuParallelWork)
  {
    std::vector<double> teacher_row(static_cast<size_t>(vocabulary)), student_row(static_cast<size_t>(vocabulary));
#pragma omp for schedule(static)
    for (int64_t position = 0; position < count; ++position) {
      const float* t_row = teacher.data() + position * vocabulary;
      const float* s_row = student.data() + position * vocabulary;
      log_softmax(t_row, vocabulary, teacher_row);
      log_softmax(s_row, vocabulary, student_row);
      double kl = 0;
      for (int64_t i = 0; i < vocabulary; ++i) kl += std::exp(teacher_row[i]) * (teacher_row[i] - student_row[i]);
      const auto at = static_cast<size_t>(position);
      const auto target = static_cast<size_t>(targets[at]);
      out.kl[at] = kl;
      out.target_log_ratio[at] = teacher_row[target] - student_row[target];
      out.teacher_top[at] = static_cast<int32_t>(std::max_element(t_row, t_row + vocabulary) - t_row);
      out.student_top[at] = static_cast<int32_t>(std::max_element(s_row, s_row + vocabulary) - s_row);
    }
  }
}

}  // namespace temoe
