#include "src/learner/distillation_reward.hpp"

#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/cpu_backend.hpp"

namespace temoe {

RewardKind parse_reward_kind(const std::string& name) {
  if (name == "log_ratio") return RewardKind::log_ratio;
  if (name == "kl") return RewardKind::kl;
  TEMOE_FAIL("rollout.reward = '" << name << "': expected 'log_ratio' or 'kl'");
}

TokenScores score_tokens(Backend& backend, const Tensor& teacher_logits, const Tensor& student_logits,
                         std::span<const int32_t> targets, RewardKind kind) {
  check_shape(student_logits, teacher_logits.shape(), "student logits");
  const int64_t vocabulary = teacher_logits.dim(teacher_logits.rank() - 1);
  const int64_t count = teacher_logits.numel() / vocabulary;
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == count, "score_tokens: " << targets.size() << " targets for " << count << " positions");
  const auto rows = static_cast<size_t>(count);
  TokenScores scores;
  scores.kl.resize(rows);
  scores.nll_gap.resize(rows);
  std::vector<int32_t> teacher_top(rows), student_top(rows);
  backend.compare_logits(teacher_logits.reshaped({count, vocabulary}), student_logits.reshaped({count, vocabulary}), targets,
                         {scores.nll_gap, scores.kl, teacher_top, student_top});
  scores.reward.resize(rows);
  scores.teacher_correct.resize(rows);
  scores.student_correct.resize(rows);
  scores.agreement.resize(rows);
  for (size_t at = 0; at < rows; ++at) {
    scores.reward[at] = kind == RewardKind::kl ? -scores.kl[at] : scores.nll_gap[at];
    scores.teacher_correct[at] = teacher_top[at] == targets[at];
    scores.student_correct[at] = student_top[at] == targets[at];
    scores.agreement[at] = teacher_top[at] == student_top[at];
  }
  return scores;
}

TokenScores score_tokens(const Tensor& teacher_logits, const Tensor& student_logits, std::span<const int32_t> targets,
                         RewardKind kind) {
  CpuBackend backend;
  return score_tokens(backend, teacher_logits, student_logits, targets, kind);
}

}  // namespace temoe
