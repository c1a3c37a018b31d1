#pragma once
// The arithmetic of the option controllers and their learner, one row (a token, an expert, a
// sequence) at a time, on raw pointers: the host compiler and nvcc compile the same functions, so
// the CPU path (option_controller.cpp, controller_policy.cpp, plackett_luce.cpp,
// advantage_estimation.cpp) and the CUDA kernels (src/learner/cuda/) run one arithmetic, and a
// GPU test can hold them to each other. The equations are in option_controller.hpp and
// advantage_estimation.hpp; these are their loops. Sums that decide bits (the heads' layers, the
// coverage, the returns) run in a fixed order in double, so neither vectorisation nor a thread
// layout changes a result.
#include <math.h>

#include <cstdint>
#include <numbers>

#include "src/core/counter_random.hpp"
#include "src/core/host_device.hpp"
#include "src/learner/random_streams.hpp"

namespace temoe::controller_math {

inline constexpr float kNormEpsilon = 1e-6f;
inline constexpr int64_t kCoverageInputs = 2;  // c(h, w): covered mass, and the best mask's mass minus it
inline constexpr float kHalfSqrt2 = static_cast<float>(std::numbers::sqrt2 / 2);
inline constexpr float kNormalDensityScale = static_cast<float>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);

TEMOE_HOST_DEVICE inline float gelu(float x) { return 0.5f * x * (1.0f + ::erff(x * kHalfSqrt2)); }

TEMOE_HOST_DEVICE inline float gelu_derivative(float x) {
  const float cdf = 0.5f * (1.0f + ::erff(x * kHalfSqrt2));
  const float pdf = ::expf(-0.5f * x * x) * kNormalDensityScale;
  return cdf + x * pdf;
}

TEMOE_HOST_DEVICE inline float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }

// Scale so that x * scale has unit root-mean-square.
TEMOE_HOST_DEVICE inline float rms_scale(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return static_cast<float>(1.0 / ::sqrt(sum / static_cast<double>(n) + kNormEpsilon));
}

// One row of the router's distribution p = softmax(logits) (exponentials in double) and the mass
// of its `k_hat` largest entries, summed largest first (ties are equal values, so their order
// does not matter).
TEMOE_HOST_DEVICE inline float router_coverage_row(const float* logits, int64_t experts, int64_t k_hat,
                                                   float* probabilities) {
  float largest = logits[0];
  for (int64_t i = 1; i < experts; ++i) largest = logits[i] > largest ? logits[i] : largest;
  double total = 0.0;
  for (int64_t i = 0; i < experts; ++i) total += ::exp(static_cast<double>(logits[i] - largest));
  for (int64_t i = 0; i < experts; ++i) {
    probabilities[i] = static_cast<float>(::exp(static_cast<double>(logits[i] - largest)) / total);
  }
  // Level by level from the top: `used` entries equal to `level` are summed so far.
  double best = 0.0;
  float level = INFINITY;
  int64_t used = 0;
  for (int64_t m = 0; m < k_hat; ++m) {
    int64_t at_level = 0;
    for (int64_t i = 0; i < experts; ++i) at_level += probabilities[i] == level ? 1 : 0;
    if (used < at_level) {
      best += level;
      ++used;
      continue;
    }
    float next = -INFINITY;
    for (int64_t i = 0; i < experts; ++i) {
      if (probabilities[i] < level && probabilities[i] > next) next = probabilities[i];
    }
    level = next;
    used = 1;
    best += level;
  }
  return static_cast<float>(best);
}

// The termination and Q heads' weights of one layer (option_controller.hpp), wherever they live.
struct HeadWeights {
  const float* termination_w1;  // [width, input]
  const float* termination_b1;  // [width]
  const float* termination_w2;  // [width]
  const float* termination_b2;  // [1]
  const float* q_w1;            // [width, input]
  const float* q_b1;            // [width]
  const float* q_w2;            // [width]
  const float* q_b2;            // [1]
  const float* q_target_mean;   // [1]
  const float* q_target_scale;  // [1]
  int64_t hidden_size;          // D
  int64_t set_dim;
  int64_t width;                // the heads' hidden width
  int64_t k_hat;
  int64_t experts;
  TEMOE_HOST_DEVICE int64_t input() const { return hidden_size + set_dim + kCoverageInputs; }
};

// One row's outputs and tape (each pointer at the row's own place).
struct HeadRow {
  float* beta;                // [1]
  float* q;                   // [1]
  float* normed_set;          // [set_dim] RMSNorm(z(w))
  float* set_norm_scale;      // [1]
  float* coverage;            // [kCoverageInputs]
  float* termination_hidden;  // [width] pre-activation
  float* q_hidden;            // [width] pre-activation
};

// beta and Q of one (h, w) row. projected: [2 * width] the h-parts of both first layers (no
// biases); phi_out: [E, set_dim] the expert encodings; mask: k_hat expert ids; probabilities: [E]
// the router's distribution at the row, or null (coverage inputs 0); best: the mass of its top
// k_hat.
TEMOE_HOST_DEVICE inline void heads_forward_row(const HeadWeights& w, const float* projected, const float* phi_out,
                                                const int32_t* mask, const float* probabilities, float best,
                                                const HeadRow& out) {
  const int64_t d = w.hidden_size, set = w.set_dim, width = w.width, input = w.input();
  float* nz = out.normed_set;
  for (int64_t j = 0; j < set; ++j) nz[j] = 0.0f;
  for (int64_t m = 0; m < w.k_hat; ++m) {
    const float* row = phi_out + static_cast<int64_t>(mask[m]) * set;
    for (int64_t j = 0; j < set; ++j) nz[j] += row[j];
  }
  for (int64_t j = 0; j < set; ++j) nz[j] /= static_cast<float>(w.k_hat);
  const float scale = rms_scale(nz, set);
  *out.set_norm_scale = scale;
  for (int64_t j = 0; j < set; ++j) nz[j] = nz[j] * scale;
  float* coverage = out.coverage;
  coverage[0] = coverage[1] = 0.0f;
  if (probabilities) {
    double covered = 0.0;
    for (int64_t m = 0; m < w.k_hat; ++m) covered += probabilities[mask[m]];
    coverage[0] = static_cast<float>(covered);
    coverage[1] = static_cast<float>(best - covered);
  }
  for (int64_t o = 0; o < width; ++o) {
    double t_sum = double(projected[o]) + w.termination_b1[o];
    double q_sum = double(projected[width + o]) + w.q_b1[o];
    for (int64_t j = 0; j < set; ++j) {
      t_sum += double(w.termination_w1[o * input + d + j]) * nz[j];
      q_sum += double(w.q_w1[o * input + d + j]) * nz[j];
    }
    for (int64_t f = 0; f < kCoverageInputs; ++f) {
      t_sum += double(w.termination_w1[o * input + d + set + f]) * coverage[f];
      q_sum += double(w.q_w1[o * input + d + set + f]) * coverage[f];
    }
    out.termination_hidden[o] = static_cast<float>(t_sum);
    out.q_hidden[o] = static_cast<float>(q_sum);
  }
  double logit = w.termination_b2[0], raw = w.q_b2[0];
  for (int64_t j = 0; j < width; ++j) logit += double(w.termination_w2[j]) * gelu(out.termination_hidden[j]);
  for (int64_t j = 0; j < width; ++j) raw += double(w.q_w2[j]) * gelu(out.q_hidden[j]);
  *out.beta = sigmoid(static_cast<float>(logit));
  *out.q = w.q_target_mean[0] + w.q_target_scale[0] * static_cast<float>(raw);
}

// What the backward of one row reads of its forward.
struct HeadTape {
  const float* beta;                // [1]
  const float* normed_set;          // [set_dim]
  const float* set_norm_scale;      // [1]
  const float* termination_hidden;  // [width]
  const float* q_hidden;            // [width]
};

// The backward of one row given d_beta and d_q: the gradients of the heads' outputs (before the
// sigmoid and PopArt's scale; 0 where a head has none) in head_gradients [2], of the first
// layers' pre-activations in d_pre [2 * width] (termination, then Q: the h-parts' and biases'
// gradients), and of z(w) in d_z [set_dim] (through the RMSNorm; h and c(h, w) are inputs).
// The weight gradients are the sums over rows of these (reduce_* below), in row order.
TEMOE_HOST_DEVICE inline void heads_backward_row(const HeadWeights& w, const HeadTape& tape, float d_beta, float d_q,
                                                 float* head_gradients, float* d_pre, float* d_z) {
  const int64_t d = w.hidden_size, set = w.set_dim, width = w.width, input = w.input();
  const float* nz = tape.normed_set;
  for (int64_t k = 0; k < set; ++k) d_z[k] = 0.0f;  // d RMSNorm(z) first, then d z in place
  const float beta = *tape.beta;
  const float g_termination = d_beta != 0.0f ? d_beta * beta * (1.0f - beta) : 0.0f;
  const float g_q = d_q != 0.0f ? d_q * w.q_target_scale[0] : 0.0f;
  head_gradients[0] = g_termination;
  head_gradients[1] = g_q;
  const float* pres[2] = {tape.termination_hidden, tape.q_hidden};
  const float* w1s[2] = {w.termination_w1, w.q_w1};
  const float* w2s[2] = {w.termination_w2, w.q_w2};
  for (int head = 0; head < 2; ++head) {
    const float g = head_gradients[head];
    float* d_row = d_pre + head * width;
    for (int64_t j = 0; j < width; ++j) {
      d_row[j] = g == 0.0f ? 0.0f : g * w2s[head][j] * gelu_derivative(pres[head][j]);
      if (g == 0.0f) continue;
      for (int64_t k = 0; k < set; ++k) d_z[k] += d_row[j] * w1s[head][j * input + d + k];
    }
  }
  // Through RMSNorm(z) (y = z * s): dz = s * (dy - y * mean(dy * y)).
  double mean = 0;
  for (int64_t j = 0; j < set; ++j) mean += static_cast<double>(d_z[j]) * nz[j];
  mean /= static_cast<double>(set);
  const float scale = *tape.set_norm_scale;
  for (int64_t j = 0; j < set; ++j) d_z[j] = scale * (d_z[j] - nz[j] * static_cast<float>(mean));
}

// The k largest keys' indices, largest first, ties to the lower index (what std::partial_sort
// with that order gives), by repeated selection: k and n are small.
TEMOE_HOST_DEVICE inline void top_indices(const double* keys, int64_t n, int64_t k, int32_t* out) {
  for (int64_t m = 0; m < k; ++m) {
    int32_t chosen = -1;
    for (int64_t i = 0; i < n; ++i) {
      bool taken = false;
      for (int64_t x = 0; x < m && !taken; ++x) taken = out[x] == i;
      if (taken) continue;
      if (chosen < 0 || keys[i] > keys[chosen]) chosen = static_cast<int32_t>(i);
    }
    out[m] = chosen;
  }
}

// Gumbel keys of a Plackett-Luce draw: logit_i - log(-log u_i), u_i in expert order.
TEMOE_HOST_DEVICE inline void gumbel_keys(const float* logits, int64_t n, CounterRandom& random, double* keys) {
  for (int64_t i = 0; i < n; ++i) keys[i] = static_cast<double>(logits[i]) - ::log(-::log(random.uniform()));
}

TEMOE_HOST_DEVICE inline bool in_prefix(const int32_t* tuple, int64_t length, int64_t expert) {
  for (int64_t x = 0; x < length; ++x) {
    if (tuple[x] == expert) return true;
  }
  return false;
}

// log-sum-exp over the experts not among tuple[0, taken), in double.
TEMOE_HOST_DEVICE inline double remaining_log_sum_exp(const float* logits, int64_t n, const int32_t* tuple, int64_t taken) {
  double maximum = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (!in_prefix(tuple, taken, i)) maximum = static_cast<double>(logits[i]) > maximum ? static_cast<double>(logits[i]) : maximum;
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!in_prefix(tuple, taken, i)) total += ::exp(static_cast<double>(logits[i]) - maximum);
  }
  return maximum + ::log(total);
}

// log of the probability of the ordered tuple (k distinct ids) under Plackett-Luce(logits).
TEMOE_HOST_DEVICE inline double plackett_luce_log_probability(const float* logits, int64_t n, const int32_t* tuple, int64_t k) {
  double total = 0;
  for (int64_t m = 0; m < k; ++m) total += static_cast<double>(logits[tuple[m]]) - remaining_log_sum_exp(logits, n, tuple, m);
  return total;
}

// Its gradient with respect to the logits; accumulated: [n] double scratch.
TEMOE_HOST_DEVICE inline void plackett_luce_gradient(const float* logits, int64_t n, const int32_t* tuple, int64_t k,
                                                     double* accumulated, float* gradient) {
  for (int64_t i = 0; i < n; ++i) accumulated[i] = 0.0;
  for (int64_t m = 0; m < k; ++m) {
    const double normaliser = remaining_log_sum_exp(logits, n, tuple, m);
    for (int64_t i = 0; i < n; ++i) {
      if (!in_prefix(tuple, m, i)) accumulated[i] -= ::exp(static_cast<double>(logits[i]) - normaliser);
    }
    accumulated[tuple[m]] += 1.0;
  }
  for (int64_t i = 0; i < n; ++i) gradient[i] = static_cast<float>(accumulated[i]);
}

// The keys of a controller's draw of `stream` at (step, global sequence, layer, position)
// (random_streams.hpp).
TEMOE_HOST_DEVICE inline CounterRandom decision_random(uint64_t seed, int64_t step, int64_t sequence, int64_t layer,
                                                       int64_t position, RandomStream stream) {
  const uint64_t keys[5] = {static_cast<uint64_t>(step), static_cast<uint64_t>(sequence), static_cast<uint64_t>(layer),
                            static_cast<uint64_t>(position), static_cast<uint64_t>(stream)};
  return CounterRandom(seed, keys, 5);
}

// One sequence's decision at one position (controller_policy.hpp): d_t ~ Bernoulli(beta) from the
// termination stream; on a termination the ordered tuple (Gumbel-top-k_hat of the selection
// logits when sampled, else their greedy top-k_hat) goes to `tuple` and, in ascending ids, to
// `held`. keys: [experts] double scratch. Returns d_t.
TEMOE_HOST_DEVICE inline bool decide_row(uint64_t seed, int64_t step, int64_t sequence, int64_t layer, int64_t position,
                                         float beta, const float* logits, int64_t experts, int64_t k_hat,
                                         bool sample_selection, double* keys, int32_t* tuple, int32_t* held) {
  CounterRandom termination = decision_random(seed, step, sequence, layer, position, RandomStream::termination);
  if (!(termination.uniform() < beta)) return false;
  if (sample_selection) {
    CounterRandom selection = decision_random(seed, step, sequence, layer, position, RandomStream::selection);
    gumbel_keys(logits, experts, selection, keys);
  } else {
    for (int64_t i = 0; i < experts; ++i) keys[i] = static_cast<double>(logits[i]);
  }
  top_indices(keys, experts, k_hat, tuple);
  for (int64_t m = 0; m < k_hat; ++m) held[m] = tuple[m];
  for (int64_t m = 1; m < k_hat; ++m) {  // insertion sort: k_hat is small
    const int32_t value = held[m];
    int64_t x = m;
    for (; x > 0 && held[x - 1] > value; --x) held[x] = held[x - 1];
    held[x] = value;
  }
  return true;
}

// G_t of one (sequence, layer) (advantage_estimation.hpp), positions 0 .. length-1; q_target and
// valid are written for every position.
TEMOE_HOST_DEVICE inline void option_value_targets_sequence(const double* rewards, const double* q_previous,
                                                            const double* beta, const double* reload_value,
                                                            const uint8_t* terminated, const uint8_t* document_end,
                                                            int64_t length, double gamma, double lambda, double eta,
                                                            double* q_target, uint8_t* valid) {
  for (int64_t t = 0; t < length; ++t) {
    q_target[t] = 0.0;
    valid[t] = 1;
  }
  if (length == 0) return;
  // A truncated window: its last position is the bootstrap state, not a step to learn from.
  const bool truncated = !document_end[length - 1];
  const int64_t steps = truncated ? length - 1 : length;
  if (truncated) valid[length - 1] = 0;
  double next_return = 0;  // G_{t+1}
  for (int64_t t = steps; t-- > 0;) {
    double value = rewards[t];
    if (!document_end[t]) {
      const int64_t next = t + 1;
      const double arrival = beta[next] * (reload_value[next] - eta) + (1.0 - beta[next]) * q_previous[next];
      value += gamma * arrival;
      // The path taken continues only where a return G_{t+1} exists (not at the bootstrap state).
      if (next < steps) {
        const double taken = next_return - eta * static_cast<double>(terminated[next] != 0);
        value += gamma * lambda * (taken - arrival);
      }
    }
    q_target[t] = value;
    next_return = value;
  }
}

}  // namespace temoe::controller_math
