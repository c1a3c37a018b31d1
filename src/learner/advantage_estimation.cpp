#include "src/learner/advantage_estimation.hpp"

#include "src/core/error.hpp"
#include "src/learner/controller_math.hpp"

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
  controller_math::option_value_targets_sequence(
      trajectory.rewards.data(), trajectory.q_previous.data(), trajectory.beta.data(), trajectory.reload_value.data(),
      trajectory.terminated.data(), trajectory.document_end.data(), static_cast<int64_t>(length), gamma, lambda, eta,
      targets.q_target.data(), targets.valid.data());
  return targets;
}

}  // namespace temoe
