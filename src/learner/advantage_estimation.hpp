#pragma once
// The option-value targets of the critic Q (DESIGN.md section 1), over one sequence of one layer,
// positions t = 0 .. T-1. Option-critic (Bacon et al. 2017, eq. 3 and the "U" of section 3)
// with the deliberation cost of Harb et al. 2017 ("When waiting is not an option", eq. 5-7):
//   V_Omega(h)   = Q(h, w_hat(h)), the value of choosing anew (w_hat: the mask a reload loads now);
//   U_{t+1}      = beta_{t+1} (V_Omega(h_{t+1}) - eta) + (1 - beta_{t+1}) Q(h_{t+1}, w_t),
//                  the one-step value of arriving at t+1 holding w_t, a termination paying eta;
//   G_t          = r_t + gamma U_{t+1} + gamma lambda (G_{t+1} - eta d_{t+1} - U_{t+1}),
//                  the lambda-return (Sutton & Barto 2018, eq. 12.18 written recursively): the
//                  expected bootstrap U, corrected towards the path actually taken, which paid eta
//                  where it terminated (d_{t+1} = 1). lambda = 1 is the Monte-Carlo return of
//                  r_t - eta d_{t+1}; lambda = 0 is the one-step target r_t + gamma U_{t+1}.
// G_t - Q(h_t, w_t) is the generalised advantage (Schulman et al. 2016) of these deltas. After the
// end of a document nothing follows (G_t = r_t); the last position of a window cut by the length
// limit has no reward of its own and only serves to bootstrap position T-2 (marked invalid).
#include <cstdint>
#include <span>
#include <vector>

namespace temoe {

struct OptionValueTargets {
  std::vector<double> q_target;  // [T] G_t: regression target of Q(h_t, w_t)
  std::vector<uint8_t> valid;    // [T] 1 where position t has a reward and a target
};

// The inputs of one (sequence, layer), each [T]: q_previous Q(h_t, w_{t-1})
// and beta beta_t = beta(h_t, w_{t-1}) (entry 0 unused); reload_value V_Omega(h_t) (entry 0
// unused); terminated d_t (entry 0 unused); document_end. When the last position does not end a
// document, the window was truncated and that position only bootstraps.
struct OptionTrajectory {
  std::span<const double> rewards;
  std::span<const double> q_previous;
  std::span<const double> beta;
  std::span<const double> reload_value;
  std::span<const uint8_t> terminated;
  std::span<const uint8_t> document_end;
};

OptionValueTargets option_value_targets(const OptionTrajectory& trajectory, double gamma, double lambda, double eta);

}  // namespace temoe
