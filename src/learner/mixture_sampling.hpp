#pragma once
// The next token of a sampled rollout (DESIGN.md section 1, mode `sampled`): drawn from the mixture
//   p_mix = (1 - m) p_student + m p_teacher          (the paper: m = 0.2)
// so that the student's own generations are explored while the teacher keeps them on sensible
// text, with the importance weight w = p_student(a) / p_mix(a) that turns an expectation under
// p_mix into one under the student's own distribution (w <= 1 / (1 - m)).
#include <cstdint>
#include <span>

namespace temoe {

struct MixtureDraw {
  int32_t token = 0;
  double student_probability = 0;  // p_student(token)
  double teacher_probability = 0;  // p_teacher(token)
  double mixture_probability = 0;  // p_mix(token)
  double importance_weight = 0;    // p_student(token) / p_mix(token)
};

// Inverts the mixture's CDF (tokens in id order, probabilities in double from the logits' softmax)
// at `uniform` in (0, 1). student_logits, teacher_logits: [V]; teacher_mix: m in [0, 1].
MixtureDraw draw_from_mixture(std::span<const float> student_logits, std::span<const float> teacher_logits,
                              double teacher_mix, double uniform);

}  // namespace temoe
