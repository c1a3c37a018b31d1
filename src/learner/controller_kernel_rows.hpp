#pragma once
// The bodies of controller_kernels.hpp's calls: one functor per call, whose operator()(i)
// computes row (or element) i. controller_kernels.cpp runs them in a loop on the host and
// src/learner/cuda/controller_kernels.cu one thread per index, so both devices compute every
// index with the same code.
#include <cstdint>

#include "src/learner/controller_kernels.hpp"
#include "src/learner/controller_math.hpp"

namespace temoe::controller_kernels {

struct RouterCoverageRow {
  const float* logits;
  int64_t experts, k_hat;
  float* probabilities;
  float* best;
  TEMOE_HOST_DEVICE void operator()(int64_t r) const {
    best[r] = controller_math::router_coverage_row(logits + r * experts, experts, k_hat, probabilities + r * experts);
  }
};

TEMOE_HOST_DEVICE inline controller_math::HeadRow head_row(const controller_math::HeadWeights& w, const HeadArrays& a,
                                                           int64_t r) {
  return {a.beta + r,
          a.q + r,
          a.normed_set + r * w.set_dim,
          a.set_norm_scale + r,
          a.coverage + r * controller_math::kCoverageInputs,
          a.termination_hidden + r * w.width,
          a.q_hidden + r * w.width};
}

struct HeadsForwardRow {
  controller_math::HeadWeights weights;
  HeadBatch batch;
  HeadArrays out;
  TEMOE_HOST_DEVICE void operator()(int64_t r) const {
    const int64_t from = batch.source ? batch.source[r] : r;
    const bool with_coverage = batch.probabilities != nullptr;
    controller_math::heads_forward_row(weights, batch.projected + from * (2 * weights.width), batch.phi_out,
                                       batch.masks + r * weights.k_hat,
                                       with_coverage ? batch.probabilities + from * weights.experts : nullptr,
                                       with_coverage ? batch.best[from] : 0.0f, head_row(weights, out, r));
  }
};

struct HeadsBackwardRow {
  controller_math::HeadWeights weights;
  HeadArrays tape;
  const float* d_beta;
  const float* d_q;
  HeadGradients out;
  TEMOE_HOST_DEVICE void operator()(int64_t r) const {
    const int64_t width = weights.width, set = weights.set_dim;
    const float g_beta = d_beta ? d_beta[r] : 0.0f, g_q = d_q ? d_q[r] : 0.0f;
    if (g_beta == 0.0f && g_q == 0.0f) {  // no gradient: zeros, as the rows with one would leave
      out.head[r * 2] = out.head[r * 2 + 1] = 0.0f;
      for (int64_t j = 0; j < 2 * width; ++j) out.pre[r * 2 * width + j] = 0.0f;
      for (int64_t j = 0; j < set; ++j) out.set[r * set + j] = 0.0f;
      return;
    }
    const controller_math::HeadTape row{tape.beta + r, tape.normed_set + r * set, tape.set_norm_scale + r,
                                        tape.termination_hidden + r * width, tape.q_hidden + r * width};
    controller_math::heads_backward_row(weights, row, g_beta, g_q, out.head + r * 2, out.pre + r * 2 * width,
                                        out.set + r * set);
  }
};

// The value one row adds to element `element` of head `head`'s weight gradients, laid out as
// [w1's set and coverage columns: width x (set_dim + kCoverageInputs)], [b1: width], [w2: width],
// [b2: 1]; 0 when the row gave the head no gradient.
TEMOE_HOST_DEVICE inline float head_weight_term(const controller_math::HeadWeights& w, int head, const HeadArrays& tape,
                                                const HeadGradients& g, int64_t r, int64_t element) {
  const int64_t width = w.width, set = w.set_dim, columns = set + controller_math::kCoverageInputs;
  const float head_gradient = g.head[r * 2 + head];
  const float* d_pre = g.pre + r * 2 * width + head * width;
  if (element < width * columns) {
    const int64_t j = element / columns, c = element % columns;
    const float input = c < set ? tape.normed_set[r * set + c] : tape.coverage[r * controller_math::kCoverageInputs + (c - set)];
    return d_pre[j] * input;
  }
  element -= width * columns;
  if (element < width) return d_pre[element];
  element -= width;
  if (element < width) {
    const float* pre = head == 0 ? tape.termination_hidden : tape.q_hidden;
    return head_gradient * controller_math::gelu(pre[r * width + element]);
  }
  return head_gradient;
}

TEMOE_HOST_DEVICE inline int64_t head_weight_elements(const controller_math::HeadWeights& w) {
  return w.width * (w.set_dim + controller_math::kCoverageInputs) + 2 * w.width + 1;
}

TEMOE_HOST_DEVICE inline float* head_weight_target(const controller_math::HeadWeights& w, const HeadWeightGradients& out,
                                                   int64_t element) {
  const int64_t width = w.width, columns = w.set_dim + controller_math::kCoverageInputs;
  if (element < width * columns) return out.w1 + (element / columns) * w.input() + w.hidden_size + element % columns;
  element -= width * columns;
  if (element < width) return out.b1 + element;
  element -= width;
  if (element < width) return out.w2 + element;
  return out.b2;
}

// Element-major: each index sums its rows in row order (the CPU adds the same terms row-major,
// which is the same order for every element).
struct HeadWeightGradientElement {
  controller_math::HeadWeights weights;
  int head;
  int64_t rows;
  HeadArrays tape;
  HeadGradients gradients;
  HeadWeightGradients out;
  TEMOE_HOST_DEVICE void operator()(int64_t element) const {
    float* target = head_weight_target(weights, out, element);
    float sum = *target;
    for (int64_t r = 0; r < rows; ++r) {
      if (gradients.head[r * 2 + head] == 0.0f) continue;
      sum += head_weight_term(weights, head, tape, gradients, r, element);
    }
    *target = sum;
  }
};

TEMOE_HOST_DEVICE inline bool all_zero(const float* values, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (values[i] != 0.0f) return false;
  }
  return true;
}

// Element (expert i, j) of d_phi_out, over rows and slots in order.
struct SetEncodingGradientElement {
  const float* d_z;
  const int32_t* masks;
  int64_t rows, k_hat, set_dim;
  float* d_phi_out;
  TEMOE_HOST_DEVICE void operator()(int64_t element) const {
    const int64_t expert = element / set_dim, j = element % set_dim;
    float sum = d_phi_out[element];
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t m = 0; m < k_hat; ++m) {
        if (masks[r * k_hat + m] == expert) sum += d_z[r * set_dim + j] / static_cast<float>(k_hat);
      }
    }
    d_phi_out[element] = sum;
  }
};

struct OptionValueTargetsRow {
  const double *rewards, *q_previous, *beta, *reload_value;
  const uint8_t *terminated, *document_end;
  int64_t length;
  double gamma, lambda, eta;
  double* q_target;
  uint8_t* valid;
  TEMOE_HOST_DEVICE void operator()(int64_t b) const {
    const int64_t o = b * length;
    controller_math::option_value_targets_sequence(rewards + o, q_previous + o, beta + o, reload_value + o, terminated + o,
                                                   document_end + o, length, gamma, lambda, eta, q_target + o, valid + o);
  }
};

struct PlackettLuceRow {
  const float* logits;
  const int32_t* tuples;
  int64_t experts, k;
  double* log_probability;
  float* gradient;
  double* scratch;
  TEMOE_HOST_DEVICE void operator()(int64_t r) const {
    const float* row = logits + r * experts;
    const int32_t* tuple = tuples + r * k;
    log_probability[r] = controller_math::plackett_luce_log_probability(row, experts, tuple, k);
    if (gradient) {
      controller_math::plackett_luce_gradient(row, experts, tuple, k, scratch + r * experts, gradient + r * experts);
    }
  }
};

struct DecideRow {
  DecisionStep at;
  const float* beta;
  const float* logits;
  const int64_t* sequence_ids;
  double* keys;
  int32_t* held;
  int32_t* tuples;
  uint8_t* terminated;
  TEMOE_HOST_DEVICE void operator()(int64_t b) const {
    terminated[b] = controller_math::decide_row(at.seed, at.step, sequence_ids[b], at.layer, at.position, beta[b],
                                                logits + b * at.experts, at.experts, at.k_hat, at.sample_selection,
                                                keys + b * at.experts, tuples + b * at.k_hat, held + b * at.k_hat)
                        ? 1
                        : 0;
  }
};

struct TargetTermsRow {
  TargetPositions p;
  TEMOE_HOST_DEVICE void operator()(int64_t i) const {
    double* flags = p.count_flags + i * 3;
    flags[0] = flags[1] = flags[2] = 0.0;
    p.termination_advantage[i] = 0.0;
    p.selection_advantage[i] = 0.0;
    if (!p.valid[i]) return;
    flags[0] = 1.0;
    if (i % p.time == 0) return;
    p.termination_advantage[i] = p.q_previous[i] - p.reload_value[i] + p.eta;
    flags[1] = 1.0;
    if (!p.terminated[i]) return;
    p.selection_advantage[i] = p.q_target[i] - p.reload_value[i];
    flags[2] = 1.0;
  }
};

struct GradientTermsRow {
  GradientPositions p;
  TEMOE_HOST_DEVICE void operator()(int64_t i) const {
    double* terms = p.terms + i * kLossTerms;
    for (int k = 0; k < kLossTerms; ++k) terms[k] = 0.0;
    p.d_q[i] = 0.0f;
    p.d_beta[i] = 0.0f;
    float* d_selection = p.d_selection ? p.d_selection + i * p.experts : nullptr;
    if (d_selection) {
      for (int64_t x = 0; x < p.experts; ++x) d_selection[x] = 0.0f;
    }
    if (!p.valid[i]) return;
    // Multiplying by exactly 1 changes no bit, so unweighted runs are what they were before weights.
    const double weight = p.weights ? p.weights[i] : 1.0;
    // The regression is in PopArt's unit scale: 0.5 ((Q - G) / sigma)^2.
    const double q_error = (double(p.q_current[i]) - p.q_target[i]) / p.value_scale;
    p.d_q[i] = static_cast<float>(p.value_coefficient * weight * q_error / (p.valid_count * p.value_scale));
    terms[q_loss] = weight * 0.5 * q_error * q_error;
    if (i % p.time == 0) return;
    const double advantage = p.termination_advantage[i];
    p.d_beta[i] = static_cast<float>(weight * advantage / p.termination_count);
    terms[termination_loss] = weight * double(p.beta_previous[i]) * advantage;
    terms[beta_sum] = p.beta_previous[i];
    terms[advantage_sum] = advantage;
    if (!p.terminated[i]) return;
    const double reload_error = (p.reload_value[i] - p.q_target[i]) / p.value_scale;
    terms[reload_loss] = weight * 0.5 * reload_error * reload_error;
    const double selection_advantage = p.selection_advantage[i];
    const float* logits = p.selection_logits + i * p.experts;
    const int32_t* tuple = p.tuples + i * p.k_hat;
    terms[selection_loss] =
        -(weight * controller_math::plackett_luce_log_probability(logits, p.experts, tuple, p.k_hat) * selection_advantage);
    if (!d_selection) return;
    controller_math::plackett_luce_gradient(logits, p.experts, tuple, p.k_hat, p.scratch + i * p.experts, d_selection);
    for (int64_t x = 0; x < p.experts; ++x) {
      d_selection[x] = static_cast<float>(-p.selection_coefficient * weight * selection_advantage * d_selection[x] /
                                          p.selection_count);
    }
  }
};

struct ColumnSumElement {
  const double* values;
  int64_t rows, columns;
  double* sums;
  TEMOE_HOST_DEVICE void operator()(int64_t c) const {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) sum += values[r * columns + c];
    sums[c] = sum;
  }
};

}  // namespace temoe::controller_kernels
