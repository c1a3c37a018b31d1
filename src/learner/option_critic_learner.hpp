#pragma once
// Option-critic actor-critic with GAE and a deliberation cost (DESIGN.md section 1), per layer:
//   V and Q regress to their GAE targets (weight: value_coefficient);
//   termination: minimise beta_t * stopgrad(Q(h_t, w_{t-1}) - V(h_t) + eta)   (t >= 1);
//   selection, where the policy reloaded: -log pi_sel(w_t | h_t) * stopgrad(Q(h_t, w_t) - V(h_t)),
// both advantages RMS-normalised per layer over the global batch. Losses are means over the global
// batch: every rank adds the gradients of its own sequences, scaled by global counts, so that the
// all-reduced sum over ranks is the gradient of the global mean whatever the world size.
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/communicator.hpp"
#include "src/learner/option_controller.hpp"
#include "src/learner/selection_locality.hpp"
#include "src/learner/student_rollout.hpp"

namespace temoe {

struct LayerLosses {
  double value = 0;        // mean 0.5 (V - target)^2
  double q_value = 0;      // mean 0.5 (Q - target)^2
  double termination = 0;  // mean beta * normalised advantage
  double selection = 0;    // mean -log pi * normalised advantage over reloads
  double termination_probability = 0;  // mean beta_t (t >= 1)
};

class OptionCriticLearner {
 public:
  // `world` sums counts and normalisers over all ranks (every rank calls in step).
  // locality: where the experts live, for the controllers' selection_locality_bias (the selected
  // tuples are scored with the same biased logits the policy drew them from).
  OptionCriticLearner(std::vector<OptionController>& controllers, Communicator& world, SelectionLocality locality = {});

  // Adds this rank's contribution to every controller parameter's gradient (the caller zeroes
  // them before and all-reduces them after). rewards, document_end: [B * T]. weights: [B * T]
  // importance weights that multiply every loss term of their position (value, Q, termination,
  // selection; a sampled rollout's p_student / p_mix, DESIGN.md section 1), or empty for 1 (a
  // teacher-forced rollout). They scale the terms only: the GAE targets, the advantages' RMS
  // normalisers and the counts the means divide by stay unweighted.
  // layer_costs: [layers * B * T] taken from the shared reward in each layer (the communication
  // cost of the layer's held mask), or empty for none.
  std::vector<LayerLosses> accumulate_gradients(const Rollout& rollout, std::span<const double> rewards,
                                                std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                                std::span<const double> weights = {},
                                                std::span<const double> layer_costs = {});

 private:
  std::vector<OptionController>& controllers_;
  Communicator& world_;
  SelectionLocality locality_;
};

}  // namespace temoe
