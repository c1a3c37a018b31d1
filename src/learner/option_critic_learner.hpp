#pragma once
// Option-critic actor-critic with GAE and a deliberation cost (DESIGN.md section 1), per layer.
// With V_Omega(h_t) = Q(h_t, w_hat_t), the value of choosing anew (w_hat_t: the mask a reload
// would load at t, the greedy top-k_hat of the selection logits), and G_t the lambda-return of
// src/learner/advantage_estimation.hpp (eta paid in the return and in the bootstrap):
//   critic:      minimise value_coefficient * 0.5 ((Q(h_t, w_t) - G_t) / sigma)^2, sigma the scale of
//                Q's targets (PopArt, src/learner/option_controller.hpp), updated from each batch's
//                targets before the regression;
//   termination: minimise beta_t * stopgrad(A^beta_t), A^beta_t = Q(h_t, w_{t-1}) - V_Omega(h_t) + eta
//                (t >= 1; the termination gradient theorem, Bacon et al. 2017 theorem 2, with
//                the deliberation cost as the margin, Harb et al. 2017 eq. 8);
//   selection:   where the policy reloaded, minimise
//                -selection_coefficient * log pi_sel(w_t | h_t) * stopgrad(G_t - V_Omega(h_t)),
//                the generalised advantage of the loaded mask over choosing greedily.
// Advantages are not normalised: eta is in the units of the reward, as in the paper. Losses are
// means over the global batch: every rank adds the gradients of its own sequences, scaled by
// global counts, so that the all-reduced sum over ranks is the gradient of the global mean
// whatever the world size. The targets are computed first (they are the stop-gradients) and then
// held fixed while the gradients are taken, which is what lets a test check every gradient
// against finite differences of the losses reported.
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/communicator.hpp"
#include "src/learner/option_controller.hpp"
#include "src/learner/selection_locality.hpp"
#include "src/learner/student_rollout.hpp"

namespace temoe {

struct LayerLosses {
  double value = 0;        // mean 0.5 ((V_Omega(h_t) - G_t) / sigma)^2 where the policy reloaded (a diagnostic)
  double q_value = 0;      // mean 0.5 ((Q(h_t, w_t) - G_t) / sigma)^2
  double termination = 0;  // mean beta_t * A^beta_t (t >= 1)
  double selection = 0;    // mean -log pi_sel(w_t | h_t) * (G_t - V_Omega(h_t)) over reloads
  double termination_probability = 0;  // mean beta_t (t >= 1)
  double termination_advantage = 0;    // mean A^beta_t (t >= 1): negative means switching pays
};

// What one layer's losses hold fixed, for all N = B * T positions of this rank.
struct LayerTargets {
  std::vector<double> q_target;               // G_t
  std::vector<uint8_t> valid;                 // position t has a reward and a target
  std::vector<double> reload_value;           // V_Omega(h_t)
  std::vector<double> termination_advantage;  // A^beta_t (0 at t = 0 and where invalid)
  std::vector<double> selection_advantage;    // G_t - V_Omega(h_t) where the policy reloaded, else 0
  // Global counts over all ranks: the denominators of the means.
  double valid_count = 0, termination_count = 0, selection_count = 0;
};

class OptionCriticLearner {
 public:
  // `world` sums counts and losses over all ranks (every rank calls in step).
  // locality: where the experts live, for the controllers' selection_locality_bias (the selected
  // tuples are scored with the same biased logits the policy drew them from).
  OptionCriticLearner(std::vector<OptionController>& controllers, Communicator& world, SelectionLocality locality = {});

  // rewards, document_end: [B * T]. layer_costs: [layers * B * T] taken from the shared reward in
  // each layer (the communication cost of the layer's held mask), or empty for none.
  std::vector<LayerTargets> targets(const Rollout& rollout, std::span<const double> rewards,
                                    std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                    std::span<const double> layer_costs = {}) const;

  // Adds this rank's contribution to every controller parameter's gradient of the losses with
  // `targets` held fixed (the caller zeroes them before and all-reduces them after), and returns
  // the global losses. weights: [B * T] importance weights that multiply every loss term of their
  // position (a sampled rollout's p_student / p_mix, DESIGN.md section 1), or empty for 1 (a
  // teacher-forced rollout). They scale the terms only: the targets and the counts the means
  // divide by stay unweighted.
  std::vector<LayerLosses> accumulate_gradients(const Rollout& rollout, const std::vector<LayerTargets>& targets,
                                                int64_t batch, int64_t time, std::span<const double> weights = {});

  // Moves every layer's Q statistics towards the global mean and second moment of its targets.
  void update_value_statistics(const std::vector<LayerTargets>& targets);

  // Both: the targets from the current parameters, then their gradients (no parameter changes).
  std::vector<LayerLosses> accumulate_gradients(const Rollout& rollout, std::span<const double> rewards,
                                                std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                                std::span<const double> weights = {},
                                                std::span<const double> layer_costs = {});

  // A training step's learning: the targets, the statistics step, then the gradients.
  std::vector<LayerLosses> learn(const Rollout& rollout, std::span<const double> rewards,
                                 std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                 std::span<const double> weights = {}, std::span<const double> layer_costs = {});

 private:
  std::vector<OptionController>& controllers_;
  Communicator& world_;
  SelectionLocality locality_;
};

// The objective whose gradient accumulate_gradients takes: the sum over layers of
// value_coefficient * q_value + termination + selection_coefficient * selection.
double total_loss(const std::vector<LayerLosses>& losses, const std::vector<OptionController>& controllers);

}  // namespace temoe
