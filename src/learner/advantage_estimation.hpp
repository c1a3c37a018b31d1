#pragma once
// Generalised advantage estimation over one sequence, for the V and Q critics of DESIGN.md
// section 1. Positions are t = 0 .. T-1 of one (sequence, layer).
//   V: delta_t = r_t + gamma * V(h_{t+1}) - V(h_t)
//   Q: delta_t = r_t + gamma * U_{t+1} - Q(h_t, w_t),
//      U_{t+1} = beta_{t+1} V(h_{t+1}) + (1 - beta_{t+1}) Q(h_{t+1}, w_t)
// The next-state value is 0 after the end of a document (`document_end[t]`); the last position of a
// window cut by the length limit has no reward of its own and only serves to bootstrap position
// T-2 (it is marked invalid in the targets).
#include <cstdint>
#include <span>
#include <vector>

namespace temoe {

// A_t = delta_t + gamma * lambda * (1 - end_t) * A_{t+1}, computed backwards.
std::vector<double> generalized_advantages(std::span<const double> deltas, std::span<const uint8_t> episode_end,
                                           double gamma, double lambda);

struct CriticTargets {
  std::vector<double> v_target;      // [T] regression target of V(h_t)
  std::vector<double> q_target;      // [T] regression target of Q(h_t, w_t)
  std::vector<uint8_t> valid;        // [T] 1 where position t has a reward and targets
};

// rewards: [T]; v: V(h_t); q_current: Q(h_t, w_t); q_previous: Q(h_t, w_{t-1}) (entry 0 unused);
// beta: beta_t = beta(h_t, w_{t-1}) (entry 0 unused); document_end: [T]. When the last position
// does not end a document, the window was truncated and that position only bootstraps.
CriticTargets critic_targets(std::span<const double> rewards, std::span<const double> v,
                             std::span<const double> q_current, std::span<const double> q_previous,
                             std::span<const double> beta, std::span<const uint8_t> document_end, double gamma,
                             double lambda);

}  // namespace temoe
