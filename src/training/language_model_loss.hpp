#pragma once
// The pretraining loss: mean next-token cross-entropy plus a Switch-style load-balancing loss.
// Both are written so that data-parallel ranks can each compute their share on their own tokens
// and the shares sum (all-reduce) to the loss of the whole global batch, gradients included.
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/activation_tape.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

// Sum over this rank's tokens of -log softmax(logits)[target]; grad_logits receives the gradient
// of (that sum / global_tokens), the rank's share of the global mean. logits, grad_logits:
// [N, V] (or [B, T, V]); targets: N ids (negative: no label).
double next_token_cross_entropy(Backend& backend, const Tensor& logits, std::span<const int32_t> targets,
                                int64_t global_tokens, Tensor& grad_logits);

// Per layer and expert, over this rank's tokens: how many (token, slot) pairs were routed to the
// expert, and the sum of its router probability. Layer-major [L * E].
struct RouterStatistics {
  int64_t layers = 0;
  int64_t experts = 0;
  std::vector<double> routed;             // [L * E] routed slot counts
  std::vector<double> probability_sums;  // [L * E]
};

RouterStatistics router_statistics(const ActivationTape& tape, int64_t num_experts, int64_t top_k);

// Switch Transformer load balancing (Fedus et al. 2021, eq. 4-6), with k slots per token and
// averaged over layers so that a perfectly balanced router scores `coefficient` at any depth:
//   L_aux = coefficient / L * sum_l E * sum_i f_{l,i} P_{l,i},
//   f_{l,i} = routed slots to expert i / (N_global k)   (a constant: the top-k has no gradient),
//   P_{l,i} = sum over the global batch's tokens of p_{t,i} / N_global.
struct LoadBalancingLoss {
  double value = 0;  // this rank's share: the shares of all ranks sum to L_aux
  // Per layer [E]: dL_aux/dp_{t,i} for each of this rank's tokens t (the same for every token).
  std::vector<std::vector<float>> probability_grads;
  std::vector<double> fractions;  // [L * E] f_{l,i}
};

// `global_routed`: routed counts summed over all ranks (the f's must be global); `local`: this
// rank's statistics (for its share of the value).
LoadBalancingLoss load_balancing_loss(std::span<const double> global_routed, const RouterStatistics& local,
                                      int64_t global_tokens, int64_t top_k, double coefficient);

// Routing locality: how many experts a short window of consecutive tokens uses between them. For
// each layer l and each window w of `window` consecutive tokens of one sequence, q_w is the mean
// router distribution over the window and exp(H(q_w)) the number of experts it effectively
// needs; the term is
//   L_loc = coefficient / L * sum_{l, w} H(q_{l,w}) / W_global,   H(q) = -sum_i q_i log q_i,
// W_global the windows of the global batch. H of the mean is at least the mean of the tokens'
// entropies, so the term rewards routers that are both confident and consistent from token to
// token: what a held expert set needs. It is off by default; the corpus testbed's recipe uses it
// to give a 3M-parameter byte model the local routing consistency that large models develop on
// their own (the experts of OLMoE and Mixtral specialise by domain; this one's specialised by byte).
struct RoutingLocalityLoss {
  double value = 0;  // this rank's share: the shares of all ranks sum to L_loc
  // Per layer [N * E], token-major: dL_loc/dp_{t,i} = -coefficient (log q_{w(t),i} + 1) / (L W_global window);
  // empty vectors when the coefficient is 0.
  std::vector<std::vector<float>> probability_grads;
  std::vector<double> window_entropy;  // [L] mean H(q_w) over this rank's windows (nats)
};

// The tape's rows are [batch, time] token-major; `window` must divide time. `global_windows`:
// windows of the whole global batch (the mean's denominator).
RoutingLocalityLoss routing_locality_loss(const ActivationTape& tape, int64_t window, int64_t global_windows,
                                          double coefficient);

}  // namespace temoe
