#pragma once
// The option controllers: one per MoE layer, parameters replicated on every rank. For a token's
// pre-MoE hidden state h (the router's input, detached) and a held mask w of k_hat experts:
//   z(w)   = mean over i in w of phi(e_i),   phi = Linear -> GELU -> Linear on expert embeddings
//   c(h,w) = [sum_{i in w} p_i,  max_{|v| = k_hat} sum_{i in v} p_i - sum_{i in w} p_i]
//            the router's probability mass p = softmax(router(h)) that w covers, and how much
//            less that is than the best mask of k_hat would cover (0 for the reload mask)
//   x      = [RMSNorm(h), RMSNorm(z(w)), c(h,w)]   (parameter-free RMSNorms)
//   beta   = sigmoid(MLP_beta(x))            termination probability
//   Q(h,w) = mu + sigma * MLP_Q(x)           value of holding w; mu, sigma: running mean and
//                                            standard deviation of Q's targets (PopArt, van Hasselt
//                                            et al. 2016), so that the MLP learns the shape of Q
//                                            in unit scale whatever the reward's size
//   s(h)   = router(h) + W_delta h + b_delta selection logits over E experts
// The coverage inputs c hand both heads what decides a held mask's worth, measured: without them
// the critic has to learn from z(w) and h alone whether w still holds the experts h routes to, and
// on the corpus testbed it did not within 150 steps (the controllers stopped switching even at
// eta = 0 while a reload would have cut the KL by half; issue 15's note).
// The value of choosing anew, V_Omega(h) = Q(h, the mask a reload would load), is Q at that mask
// (src/learner/advantage_estimation.hpp), so there is no separate state-value head. The selection
// head is a delta on the frozen router's own logits, zero at the start (a reload loads the
// router's top-k_hat) and trained at its own, smaller learning rate
// (controller.selection_learning_rate): a step at the controllers' rate would move a head that
// starts as the router's weights (RMS ~0.04) by several percent.
// Forward and backward are written by hand: the MLPs are small; their per-row arithmetic is
// src/learner/controller_math.hpp's, which the CUDA kernels share. The parts
// that see h (D wide) run as GEMMs over all rows at once; the mask-dependent parts are per row.
#include <cstdint>
#include <span>
#include <vector>

#include "src/learner/controller_config.hpp"
#include "src/learner/controller_math.hpp"
#include "src/tensor/parameter_set.hpp"

namespace temoe {

// Outputs for a batch of (h, w) rows, plus what the backward needs.
struct ControllerEvaluation {
  int64_t rows = 0;
  std::vector<float> beta;               // [rows]
  std::vector<float> q;                  // [rows]
  std::vector<float> selection_logits;   // [rows, E] (only when asked for)
  // Tape.
  std::vector<float> phi_hidden;         // [E, hidden] pre-activation of phi
  std::vector<float> phi_out;            // [E, set_dim]
  Tensor normed_hidden;                  // [rows, D] RMSNorm(h)
  std::vector<float> normed_set;         // [rows, set_dim] RMSNorm(z(w))
  std::vector<float> set_norm_scale;     // [rows] 1 / rms(z)
  std::vector<float> coverage;           // [rows, kCoverageInputs] c(h, w)
  std::vector<float> termination_hidden; // [rows, hidden] pre-activation
  std::vector<float> q_hidden;           // [rows, hidden] pre-activation
};
// The mask-independent part of a batch, computed once per layer with GEMMs over all rows: the
// expert encodings phi(e_i), RMSNorm(h), the h-parts of the termination and Q first layers, and
// the selection logits.
struct HiddenProjection {
  int64_t rows = 0;
  std::vector<float> phi_hidden;        // [E, hidden]
  std::vector<float> phi_out;           // [E, set_dim]
  Tensor normed_hidden;                 // [rows, D]
  Tensor projected;                     // [rows, 2 * hidden]: termination, Q (without biases)
  std::vector<float> selection_logits;  // [rows, E] (only when asked for)
  // [rows, E] softmax of the router's logits and [rows] the mass of their top k_hat (empty, and
  // the coverage inputs 0, when no router logits were given).
  std::vector<float> router_probabilities;
  std::vector<float> best_coverage;
};

// c(h, w): covered mass, and the best mask's mass minus it.
inline constexpr int64_t kCoverageInputs = controller_math::kCoverageInputs;

class OptionController {
 public:
  // Registers the parameters of layer `layer` in `parameters` (names "layer<l>.<piece>") and
  // initialises them from `seed`; the selection delta starts at zero.
  OptionController(ParameterSet& parameters, int64_t layer, int64_t hidden_size, int64_t num_experts,
                   const ControllerConfig& config, uint64_t seed);

  int64_t layer() const { return layer_; }
  int64_t num_experts() const { return num_experts_; }
  int64_t hidden_size() const { return hidden_size_; }
  const ControllerConfig& config() const { return config_; }

  // hidden: [rows, D]; masks: rows * k_hat expert ids. router_logits: [rows, E], the frozen
  // router's logits at these rows, to which the selection delta is added (empty: no selection).
  ControllerEvaluation evaluate(std::span<const float> hidden, std::span<const int32_t> masks, int64_t rows,
                                std::span<const float> router_logits) const;

  // The same in two parts, so that a scan over positions projects all rows once and then
  // evaluates a few rows at a time with their masks. row_indices: rows of the projection to use
  // (in order); masks: row_indices.size() * k_hat expert ids.
  HiddenProjection project(std::span<const float> hidden, int64_t rows, std::span<const float> router_logits) const;
  ControllerEvaluation evaluate_rows(const HiddenProjection& projection, std::span<const int64_t> row_indices,
                                     std::span<const int32_t> masks) const;

  // Accumulates parameter gradients of sum_r (d_beta[r] * beta[r] + d_q[r] * q[r] + d_selection[r] . s[r]);
  // empty spans count as zeros.
  void backward(const ControllerEvaluation& evaluation, std::span<const float> hidden, std::span<const int32_t> masks,
                std::span<const float> d_beta, std::span<const float> d_q, std::span<const float> d_selection);

  // Keeps the termination bias inside its configured range (after each optimizer step).
  void clamp_termination_bias();

  // PopArt's statistics step: moves mu and sigma towards a batch's mean and second moment of the
  // Q targets (the first call sets them) and rescales Q's output layer so that every Q value stays
  // what it was.
  void update_value_statistics(double batch_mean, double batch_second_moment, double rate);
  double value_scale() const;

  // Pointers into the parameters (wherever they live), for the row functions of controller_math.hpp.
  controller_math::HeadWeights head_weights() const;

 private:
  struct Pieces {
    Parameter* expert_embedding;  // [E, embedding_dim]
    Parameter* phi_w1;            // [hidden, embedding_dim]
    Parameter* phi_b1;            // [hidden]
    Parameter* phi_w2;            // [set_dim, hidden]
    Parameter* phi_b2;            // [set_dim]
    Parameter* termination_w1;    // [hidden, D + set_dim + kCoverageInputs]
    Parameter* termination_b1;    // [hidden]
    Parameter* termination_w2;    // [1, hidden]
    Parameter* termination_b2;    // [1]
    Parameter* q_w1;              // [hidden, D + set_dim + kCoverageInputs]
    Parameter* q_b1;              // [hidden]
    Parameter* q_w2;              // [1, hidden]
    Parameter* q_b2;              // [1]
    Parameter* q_target_mean;     // [1] value statistics (not trained by gradient)
    Parameter* q_target_scale;    // [1]
    Parameter* q_target_updates;  // [1] statistics steps taken (0: the next batch sets them)
    Parameter* selection_w;       // [E, D] the delta on the router's logits
    Parameter* selection_b;       // [E]
  };
  Pieces pieces() const;

  ParameterSet& parameters_;
  int64_t layer_;
  int64_t hidden_size_;
  int64_t num_experts_;
  ControllerConfig config_;
};

// The names of layer `layer`'s controller parameters start with this prefix.
std::string controller_prefix(int64_t layer);

// Whether a controller parameter belongs to the selection delta (its own learning rate).
bool is_selection_parameter(const std::string& name);
// Whether a controller "parameter" is one of Q's target statistics (set by
// update_value_statistics, never by the optimizer).
bool is_value_statistic(const std::string& name);

}  // namespace temoe
