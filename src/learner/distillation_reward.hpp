#pragma once
// Self-distillation against the frozen teacher: per position t with next token a,
//   r_t = log p_teacher(a | a_<t) - log p_student(a | a_<t)          (reward "log_ratio")
//   r_t = -KL(p_teacher || p_student) at position t                  (reward "kl")
// plus the measures the evaluation reports (KL, next-token accuracy of both models, top-1
// agreement of the two, NLL gap).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/tensor/backend.hpp"

namespace temoe {

enum class RewardKind { log_ratio, kl };
RewardKind parse_reward_kind(const std::string& name);

struct TokenScores {
  std::vector<double> reward;          // [N]
  std::vector<double> kl;              // [N] KL(p_teacher || p_student)
  std::vector<uint8_t> teacher_correct;  // [N] argmax of the teacher is the next token
  std::vector<uint8_t> student_correct;  // [N]
  std::vector<uint8_t> agreement;        // [N] the two argmaxes are the same token
  std::vector<double> nll_gap;           // [N] -log p_student(a) + log p_teacher(a) (the log-ratio reward)
};

// logits: [B, T, V] where `backend` computes (the model's device: on a GPU only the per-token
// numbers come back to the host, never the logits); targets: B * T next-token ids.
TokenScores score_tokens(Backend& backend, const Tensor& teacher_logits, const Tensor& student_logits,
                         std::span<const int32_t> targets, RewardKind kind);
// The same for host logits.
TokenScores score_tokens(const Tensor& teacher_logits, const Tensor& student_logits, std::span<const int32_t> targets,
                         RewardKind kind);

}  // namespace temoe
