#pragma once
// Self-distillation against the frozen teacher: per position t with next token a,
//   r_t = log p_teacher(a | a_<t) - log p_student(a | a_<t)          (reward "log_ratio")
//   r_t = -KL(p_teacher || p_student) at position t                  (reward "kl")
// plus the measures the evaluation reports (KL, next-token accuracy of both models).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

enum class RewardKind { log_ratio, kl };
RewardKind parse_reward_kind(const std::string& name);

struct TokenScores {
  std::vector<double> reward;          // [N]
  std::vector<double> kl;              // [N] KL(p_teacher || p_student)
  std::vector<uint8_t> teacher_correct;  // [N] argmax of the teacher is the next token
  std::vector<uint8_t> student_correct;  // [N]
};

// logits: [B, T, V]; targets: B * T next-token ids.
TokenScores score_tokens(const Tensor& teacher_logits, const Tensor& student_logits, std::span<const int32_t> targets,
                         RewardKind kind);

}  // namespace temoe
