#pragma once
// The option controllers' and the learner's row arithmetic (controller_math.hpp) over whole
// arrays, on the host or in CUDA memory: one call per piece of a layer's work, each row (a token,
// a sequence, an expert, an element of a weight gradient) computed by the same function on
// either device. Every pointer lives in `device`'s memory. Weight gradients are sums over rows
// in row order, added to what the gradient holds, so the CPU and the GPU add the same numbers in
// the same order (they differ only where expf / erff differ by an ulp).
#include <cstdint>

#include "src/learner/controller_math.hpp"
#include "src/tensor/device.hpp"

namespace temoe::controller_kernels {

// probabilities [rows, E] = softmax of the router's logits, best [rows] = the mass of their top k_hat.
void router_coverage(Device device, const float* router_logits, int64_t rows, int64_t experts, int64_t k_hat,
                     float* probabilities, float* best);

// A batch of head rows: row r reads projected row source[r] (source null: r) and mask r.
struct HeadBatch {
  int64_t rows = 0;
  const int64_t* source = nullptr;           // [rows] or null
  const float* projected = nullptr;          // [projection rows, 2 * width]
  const float* phi_out = nullptr;            // [E, set_dim]
  const int32_t* masks = nullptr;            // [rows, k_hat]
  const float* probabilities = nullptr;      // [projection rows, E] or null (coverage 0)
  const float* best = nullptr;               // [projection rows] (with probabilities)
};

// The outputs and tape of a batch, each [rows, ...] as HeadRow's.
struct HeadArrays {
  float* beta = nullptr;
  float* q = nullptr;
  float* normed_set = nullptr;          // [rows, set_dim]
  float* set_norm_scale = nullptr;
  float* coverage = nullptr;            // [rows, kCoverageInputs]
  float* termination_hidden = nullptr;  // [rows, width]
  float* q_hidden = nullptr;            // [rows, width]
};

void heads_forward(Device device, const controller_math::HeadWeights& weights, const HeadBatch& batch, const HeadArrays& out);

// Gradients of one backward call (OptionController::backward's pieces): the heads' output
// gradients [rows, 2], the first layers' pre-activation gradients [rows, 2 * width] and the
// gradients of z(w) [rows, set_dim], then the weight gradients they sum to.
struct HeadGradients {
  float* head = nullptr;        // [rows, 2]
  float* pre = nullptr;         // [rows, 2 * width]
  float* set = nullptr;         // [rows, set_dim]
};

// d_beta, d_q: [rows] or null (zeros).
void heads_backward(Device device, const controller_math::HeadWeights& weights, int64_t rows, const HeadArrays& tape,
                    const float* d_beta, const float* d_q, const HeadGradients& out);

// The heads' weight gradients, added: w2 [width], b2 [1], b1 [width] and the set and coverage
// columns of w1 [width, input] of head `head` (0 termination, 1 Q), sums over rows in row order.
struct HeadWeightGradients {
  float* w1 = nullptr;
  float* b1 = nullptr;
  float* w2 = nullptr;
  float* b2 = nullptr;
};
void head_weight_gradients(Device device, const controller_math::HeadWeights& weights, int head, int64_t rows,
                           const HeadArrays& tape, const HeadGradients& gradients, const HeadWeightGradients& out);

// d_phi_out [E, set_dim] += sum over rows r and slots m with masks[r, m] = i of d_z[r] / k_hat.
void set_encoding_gradients(Device device, const float* d_z, const int32_t* masks, int64_t rows, int64_t k_hat,
                            int64_t experts, int64_t set_dim, float* d_phi_out);

// G_t and the valid flags of `sequences` sequences of `length` positions (row-major [sequences,
// length] arrays).
void option_value_targets(Device device, const double* rewards, const double* q_previous, const double* beta,
                          const double* reload_value, const uint8_t* terminated, const uint8_t* document_end,
                          int64_t sequences, int64_t length, double gamma, double lambda, double eta, double* q_target,
                          uint8_t* valid);

// Plackett-Luce log-probabilities [rows] of the ordered tuples [rows, k] under logits [rows, E],
// and their gradients [rows, E] (gradient null: none). scratch: [rows, E] doubles.
void plackett_luce(Device device, const float* logits, const int32_t* tuples, int64_t rows, int64_t experts, int64_t k,
                   double* log_probability, float* gradient, double* scratch);

// One position's decisions of a batch of sequences (controller_math::decide_row): beta [batch],
// logits [batch, E] (the selection logits at the position), sequence ids [batch]; held [batch,
// k_hat] is updated in place; tuples [batch, k_hat] get the drawn tuple where terminated [batch]
// is 1. keys: [batch, E] doubles.
struct DecisionStep {
  uint64_t seed = 0;
  int64_t step = 0;
  int64_t layer = 0;
  int64_t position = 0;
  int64_t batch = 0;
  int64_t experts = 0;
  int64_t k_hat = 0;
  bool sample_selection = false;
};
void decide(Device device, const DecisionStep& at, const float* beta, const float* logits, const int64_t* sequence_ids,
            double* keys, int32_t* held, int32_t* tuples, uint8_t* terminated);

// The learner's per-position terms of one layer (option_critic_learner.hpp), N = B * T positions
// in sequence-major order. targets: from G_t (q_target, valid) and the controllers' values, the
// termination advantage A^beta_t, the selection advantage and the count flags [N, 3] (valid;
// valid and t >= 1; valid, t >= 1 and terminated).
struct TargetPositions {
  int64_t count = 0, time = 0;
  double eta = 0;
  const uint8_t* valid = nullptr;
  const uint8_t* terminated = nullptr;
  const double* q_target = nullptr;
  const double* q_previous = nullptr;    // Q(h_t, w_{t-1})
  const double* reload_value = nullptr;  // V_Omega(h_t)
  double* termination_advantage = nullptr;
  double* selection_advantage = nullptr;
  double* count_flags = nullptr;         // [N, 3]
};
void target_terms(Device device, const TargetPositions& positions);

// gradients: the output gradients of the losses (d_q, d_beta, and d_selection [N, E] unless the
// selection is not learned) and each position's loss terms [N, kLossTerms], in LearnerSum order.
enum LearnerSum { q_loss, reload_loss, termination_loss, selection_loss, beta_sum, advantage_sum, kLossTerms };
struct GradientPositions {
  int64_t count = 0, time = 0, experts = 0, k_hat = 0;
  const uint8_t* valid = nullptr;
  const uint8_t* terminated = nullptr;
  const double* q_target = nullptr;
  const double* termination_advantage = nullptr;
  const double* selection_advantage = nullptr;
  const double* reload_value = nullptr;
  const float* q_current = nullptr;         // Q(h_t, w_t)
  const float* beta_previous = nullptr;     // beta(h_t, w_{t-1})
  const float* selection_logits = nullptr;  // [N, E]
  const int32_t* tuples = nullptr;          // [N, k_hat] the drawn tuples (read where terminated)
  const double* weights = nullptr;          // [N] importance weights, or null (1)
  double valid_count = 1, termination_count = 1, selection_count = 1;  // the means' denominators (>= 1)
  double value_scale = 1, value_coefficient = 0, selection_coefficient = 0;
  float* d_q = nullptr;
  float* d_beta = nullptr;
  float* d_selection = nullptr;  // null when selection_coefficient is 0
  double* terms = nullptr;       // [N, kLossTerms]
  double* scratch = nullptr;     // [N, E]
};
void gradient_terms(Device device, const GradientPositions& positions);

// sums[c] = sum over rows r of values[r, c] (values: [rows, columns]), in row order.
void column_sums(Device device, const double* values, int64_t rows, int64_t columns, double* sums);

}  // namespace temoe::controller_kernels
