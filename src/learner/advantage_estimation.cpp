#include "src/learner/advantage_estimation.hpp"

#include "src/core/error.hpp"

namespace temoe {

std::vector<double> generalized_advantages(std::span<const double> deltas, std::span<const uint8_t> episode_end,
                                           double gamma, double lambda) {
  TEMOE_CHECK(deltas.size() == episode_end.size(), "GAE: " << deltas.size() << " deltas, " << episode_end.size() << " end flags");
  std::vector<double> advantages(deltas.size());
  double next = 0;
  for (size_t i = deltas.size(); i-- > 0;) {
    next = deltas[i] + gamma * lambda * (episode_end[i] ? 0.0 : next);
    advantages[i] = next;
  }
  return advantages;
}

CriticTargets critic_targets(std::span<const double> rewards, std::span<const double> v,
                             std::span<const double> q_current, std::span<const double> q_previous,
                             std::span<const double> beta, std::span<const uint8_t> document_end, double gamma,
                             double lambda) {
  const size_t length = rewards.size();
  TEMOE_CHECK(v.size() == length && q_current.size() == length && q_previous.size() == length && beta.size() == length &&
                  document_end.size() == length,
              "critic_targets: inputs of different lengths (" << length << " rewards)");
  CriticTargets targets;
  targets.v_target.assign(length, 0.0);
  targets.q_target.assign(length, 0.0);
  targets.valid.assign(length, 1);
  if (length == 0) return targets;
  // A truncated window: its last position is the bootstrap state, not a step to learn from.
  const bool truncated = !document_end[length - 1];
  const size_t steps = truncated ? length - 1 : length;
  if (truncated) targets.valid[length - 1] = 0;
  std::vector<double> v_delta(steps), q_delta(steps);
  std::vector<uint8_t> end(steps);
  for (size_t t = 0; t < steps; ++t) {
    end[t] = document_end[t];
    const bool terminal = document_end[t] != 0;
    const double next_v = terminal ? 0.0 : v[t + 1];
    const double next_u = terminal ? 0.0 : beta[t + 1] * v[t + 1] + (1.0 - beta[t + 1]) * q_previous[t + 1];
    v_delta[t] = rewards[t] + gamma * next_v - v[t];
    q_delta[t] = rewards[t] + gamma * next_u - q_current[t];
  }
  const auto v_advantage = generalized_advantages(v_delta, end, gamma, lambda);
  const auto q_advantage = generalized_advantages(q_delta, end, gamma, lambda);
  for (size_t t = 0; t < steps; ++t) {
    targets.v_target[t] = v_advantage[t] + v[t];
    targets.q_target[t] = q_advantage[t] + q_current[t];
  }
  return targets;
}

}  // namespace temoe
