#include "src/learner/distillation_reward.hpp"

#include <algorithm>
#include <cmath>

#include "src/core/error.hpp"

namespace temoe {

RewardKind parse_reward_kind(const std::string& name) {
  if (name == "log_ratio") return RewardKind::log_ratio;
  if (name == "kl") return RewardKind::kl;
  TEMOE_FAIL("rollout.reward = '" << name << "': expected 'log_ratio' or 'kl'");
}

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

TokenScores score_tokens(const Tensor& teacher_logits, const Tensor& student_logits, std::span<const int32_t> targets,
                         RewardKind kind) {
  check_shape(student_logits, teacher_logits.shape(), "student logits");
  const int64_t vocabulary = teacher_logits.dim(teacher_logits.rank() - 1);
  const int64_t count = teacher_logits.numel() / vocabulary;
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == count, "score_tokens: " << targets.size() << " targets for " << count << " positions");
  TokenScores scores;
  scores.reward.resize(static_cast<size_t>(count));
  scores.kl.resize(static_cast<size_t>(count));
  scores.teacher_correct.resize(static_cast<size_t>(count));
  scores.student_correct.resize(static_cast<size_t>(count));
  scores.agreement.resize(static_cast<size_t>(count));
  scores.nll_gap.resize(static_cast<size_t>(count));
#pragma omp parallel if (count * vocabulary >= (1 << 15))
  {
    std::vector<double> teacher(static_cast<size_t>(vocabulary)), student(static_cast<size_t>(vocabulary));
#pragma omp for schedule(static)
    for (int64_t position = 0; position < count; ++position) {
      const float* t_row = teacher_logits.data() + position * vocabulary;
      const float* s_row = student_logits.data() + position * vocabulary;
      log_softmax(t_row, vocabulary, teacher);
      log_softmax(s_row, vocabulary, student);
      double kl = 0;
      for (int64_t i = 0; i < vocabulary; ++i) kl += std::exp(teacher[i]) * (teacher[i] - student[i]);
      const auto target = static_cast<size_t>(targets[static_cast<size_t>(position)]);
      TEMOE_CHECK(target < static_cast<size_t>(vocabulary), "target token " << target << " outside the vocabulary");
      const auto at = static_cast<size_t>(position);
      const std::ptrdiff_t teacher_top = std::max_element(t_row, t_row + vocabulary) - t_row;
      const std::ptrdiff_t student_top = std::max_element(s_row, s_row + vocabulary) - s_row;
      scores.kl[at] = kl;
      scores.nll_gap[at] = teacher[target] - student[target];
      scores.reward[at] = kind == RewardKind::kl ? -kl : scores.nll_gap[at];
      scores.teacher_correct[at] = teacher_top == static_cast<std::ptrdiff_t>(target);
      scores.student_correct[at] = student_top == static_cast<std::ptrdiff_t>(target);
      scores.agreement[at] = teacher_top == student_top;
    }
  }
  return scores;
}

}  // namespace temoe
