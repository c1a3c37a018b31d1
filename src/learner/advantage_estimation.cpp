#include "src/learner/advantage_estimation.hpp"

#include "src/core/error.hpp"

namespace temoe {

OptionValueTargets option_value_targets(const OptionTrajectory& trajectory, double gamma, double lambda, double eta) {
  const size_t length = trajectory.rewards.size();
  TEMOE_CHECK(trajectory.q_previous.size() == length &&
                  trajectory.beta.size() == length && trajectory.reload_value.size() == length &&
                  trajectory.terminated.size() == length && trajectory.document_end.size() == length,
              "option_value_targets: inputs of different lengths (" << length << " rewards)");
  OptionValueTargets targets;
  targets.q_target.assign(length, 0.0);
  targets.valid.assign(length, 1);
  if (length == 0) return targets;
  // A truncated window: its last position is the bootstrap state, not a step to learn from.
  const bool truncated = !trajectory.document_end[length - 1];
  const size_t steps = truncated ? length - 1 : length;
  if (truncated) targets.valid[length - 1] = 0;
  double next_return = 0;  // G_{t+1}
  for (size_t t = steps; t-- > 0;) {
    double value = trajectory.rewards[t];
    if (!trajectory.document_end[t]) {
      const size_t next = t + 1;
      const double beta = trajectory.beta[next];
      const double arrival = beta * (trajectory.reload_value[next] - eta) + (1.0 - beta) * trajectory.q_previous[next];
      value += gamma * arrival;
      // The path taken continues only where a return G_{t+1} exists (not at the bootstrap state).
      if (next < steps) {
        const double taken = next_return - eta * static_cast<double>(trajectory.terminated[next] != 0);
        value += gamma * lambda * (taken - arrival);
      }
    }
    targets.q_target[t] = value;
    next_return = value;
  }
  return targets;
}

}  // namespace temoe
