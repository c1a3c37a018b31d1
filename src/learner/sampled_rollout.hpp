#pragma once
// A sampled rollout (DESIGN.md section 1, mode `sampled`, the paper's): the student generates from
// prompts. Each sequence's first P tokens come from the data (the prompt); from there the student
// (routing inside the controllers' held masks) and the teacher (plain top-k) run in lock-step on
// the same tokens, each with its own KV cache, and the token after position t is drawn from
//   p_mix = (1 - m) p_student(. | x_<=t) + m p_teacher(. | x_<=t)
// with the importance weight p_student / p_mix (src/learner/mixture_sampling.hpp). The draw is keyed
// by (seed, step, global sequence, position) (src/learner/random_streams.hpp), the controllers'
// draws by (seed, step, global sequence, layer, position) as in a teacher-forced rollout, so a
// sequence's generation does not depend on the rank or batch slot that holds it.
//
// What is recorded is what a teacher-forced rollout of the final tokens returns (the learner does
// not know the difference): per layer the hidden states, router logits, the controllers' decisions
// and the experts used, at every position 0 .. T-1, and both models' logits. They are the values
// computed while generating, not a second forward (a replay would only repeat the same arithmetic
// in another GEMM shape).
//
// Position t's importance weight is that of its target, the token drawn from position t's
// prediction: the controllers' decisions at t (state h_t, held mask) shape the logits at t, and the
// reward r_t scores the token drawn from them, so every loss term of position t is weighted by it.
//
// The prompt is a teacher-forced stretch: the controllers decide there too (the held masks carry
// into the generation), and positions t < P - 1 keep the data's next token as target with weight 1
// (it was not drawn). Position P - 1 onwards predicts drawn tokens. Generation always runs to T
// (there is no end of document in a continuation, so the last position only bootstraps), which
// keeps every rank of an expert-parallel group in the same number of expert exchanges.
#include <cstdint>
#include <vector>

#include "src/data/batch_sampler.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/student_rollout.hpp"

namespace temoe {

struct SampledRolloutOptions {
  int64_t prompt_length = 16;  // P: prompt tokens per sequence, 1 <= P <= T
  double teacher_mix = 0.2;    // m: the teacher's share of the sampling mixture, in [0, 1)
};

struct SampledRollout {
  Rollout student;  // as run_rollout with the controllers on `tokens` (targets: `targets`)
  Rollout teacher;  // logits [B, T, V] and chosen_experts only
  std::vector<int32_t> tokens;              // [B, T] inputs: the prompt, then drawn tokens
  std::vector<int32_t> targets;             // [B, T] the token after each input
  std::vector<uint8_t> generated;           // [B, T] 1 where the target was drawn (t >= P - 1)
  std::vector<double> importance_weights;   // [B, T] p_student / p_mix of a drawn target, 1 elsewhere
};

// batch: the prompts (row b's first P tokens, and its targets before P - 1) with their global
// sequence indices; T = batch.time. The policy samples (training) or not (evaluation).
SampledRollout run_sampled_rollout(MoeTransformer& model, ControllerPolicy& policy, const data::SequenceBatch& batch,
                                   const SampledRolloutOptions& options, uint64_t seed, int64_t step);

}  // namespace temoe
