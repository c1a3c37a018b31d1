#include "src/learner/option_critic_learner.hpp"

#include <cmath>
#include <utility>

#include "src/core/error.hpp"
#include "src/learner/advantage_estimation.hpp"
#include "src/learner/plackett_luce.hpp"

namespace temoe {

namespace {

// What one layer needs between the two passes (sums first, gradients after the all-reduce).
struct LayerWork {
  ControllerEvaluation previous;  // at (h_t, w_{t-1}): beta_t and Q(h_t, w_{t-1})
  ControllerEvaluation current;   // at (h_t, w_t): Q(h_t, w_t), V(h_t), selection logits
  std::vector<double> v_target, q_target;
  std::vector<uint8_t> valid;
  std::vector<double> termination_advantage;  // Q(h, w_{t-1}) - V(h) + eta, unnormalised
  std::vector<double> selection_advantage;    // Q(h, w_t) - V(h), unnormalised
};

// Global sums per layer, in this order.
enum Sum { valid_count, termination_count, selection_count, termination_square, selection_square,
           value_loss, q_loss, beta_sum, kSums };

}  // namespace

OptionCriticLearner::OptionCriticLearner(std::vector<OptionController>& controllers, Communicator& world,
                                         SelectionLocality locality)
    : controllers_(controllers), world_(world), locality_(std::move(locality)) {}

std::vector<LayerLosses> OptionCriticLearner::accumulate_gradients(const Rollout& rollout, std::span<const double> rewards,
                                                                   std::span<const uint8_t> document_end, int64_t batch,
                                                                   int64_t time, std::span<const double> weights,
                                                                   std::span<const double> layer_costs) {
  const auto layers = static_cast<int64_t>(controllers_.size());
  const int64_t count = batch * time;
  TEMOE_CHECK(static_cast<int64_t>(rollout.decisions.size()) == layers,
              "learner: the rollout has decisions for " << rollout.decisions.size() << " layers, " << layers << " controllers");
  TEMOE_CHECK(static_cast<int64_t>(rewards.size()) == count && static_cast<int64_t>(document_end.size()) == count,
              "learner: " << rewards.size() << " rewards and " << document_end.size() << " end flags for " << count << " positions");
  TEMOE_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == count,
              "learner: " << weights.size() << " importance weights for " << count << " positions");
  TEMOE_CHECK(layer_costs.empty() || static_cast<int64_t>(layer_costs.size()) == layers * count,
              "learner: " << layer_costs.size() << " layer costs for " << layers << " layers x " << count << " positions");
  // Multiplying by exactly 1 changes no bit, so unweighted runs are what they were before weights.
  const auto weight_at = [&](size_t i) { return weights.empty() ? 1.0 : weights[i]; };
  std::vector<LayerWork> work(static_cast<size_t>(layers));
  std::vector<double> sums(static_cast<size_t>(layers * kSums), 0.0);
  for (int64_t layer = 0; layer < layers; ++layer) {
    OptionController& controller = controllers_[static_cast<size_t>(layer)];
    const LayerDecisions& decisions = rollout.decisions[static_cast<size_t>(layer)];
    const Tensor& hidden = rollout.hidden[static_cast<size_t>(layer)];
    const std::span<const float> rows(hidden.data(), static_cast<size_t>(hidden.numel()));
    LayerWork& w = work[static_cast<size_t>(layer)];
    HiddenProjection projection = controller.project(rows, count, /*with_selection=*/true);
    apply_selection_locality(projection.selection_logits, controller.num_experts(), locality_,
                             controller.config().selection_locality_bias);
    w.previous = controller.evaluate_rows(projection, {}, decisions.previous_masks);
    w.current = controller.evaluate_rows(projection, {}, decisions.masks);
    w.v_target.assign(static_cast<size_t>(count), 0.0);
    w.q_target.assign(static_cast<size_t>(count), 0.0);
    w.valid.assign(static_cast<size_t>(count), 0);
    w.termination_advantage.assign(static_cast<size_t>(count), 0.0);
    w.selection_advantage.assign(static_cast<size_t>(count), 0.0);
    double* s = sums.data() + layer * kSums;
    std::vector<double> layer_rewards;
    std::span<const double> rewards_here = rewards;
    if (!layer_costs.empty()) {
      layer_rewards.assign(rewards.begin(), rewards.end());
      for (int64_t i = 0; i < count; ++i) layer_rewards[static_cast<size_t>(i)] -= layer_costs[static_cast<size_t>(layer * count + i)];
      rewards_here = layer_rewards;
    }
    for (int64_t b = 0; b < batch; ++b) {
      const auto at = [&](const std::vector<float>& values) {
        return std::vector<double>(values.begin() + b * time, values.begin() + (b + 1) * time);
      };
      const size_t first = static_cast<size_t>(b * time);
      const auto targets = critic_targets(rewards_here.subspan(first, static_cast<size_t>(time)), at(w.current.v),
                                          at(w.current.q), at(w.previous.q), at(w.previous.beta),
                                          document_end.subspan(first, static_cast<size_t>(time)),
                                          controller.config().gamma, controller.config().lambda);
      for (int64_t t = 0; t < time; ++t) {
        const size_t i = first + static_cast<size_t>(t);
        w.v_target[i] = targets.v_target[static_cast<size_t>(t)];
        w.q_target[i] = targets.q_target[static_cast<size_t>(t)];
        w.valid[i] = targets.valid[static_cast<size_t>(t)];
        if (!w.valid[i]) continue;
        const double weight = weight_at(i);
        s[valid_count] += 1;
        s[value_loss] += weight * 0.5 * std::pow(w.current.v[i] - w.v_target[i], 2);
        s[q_loss] += weight * 0.5 * std::pow(w.current.q[i] - w.q_target[i], 2);
        if (t == 0) continue;
        w.termination_advantage[i] = double(w.previous.q[i]) - w.current.v[i] + controller.config().eta;
        s[termination_count] += 1;
        s[termination_square] += w.termination_advantage[i] * w.termination_advantage[i];
        s[beta_sum] += w.previous.beta[i];
        if (decisions.terminated[i]) {
          w.selection_advantage[i] = double(w.current.q[i]) - w.current.v[i];
          s[selection_count] += 1;
          s[selection_square] += w.selection_advantage[i] * w.selection_advantage[i];
        }
      }
    }
  }
  world_.all_reduce_sum(std::span<double>(sums));

  std::vector<LayerLosses> losses(static_cast<size_t>(layers));
  for (int64_t layer = 0; layer < layers; ++layer) {
    OptionController& controller = controllers_[static_cast<size_t>(layer)];
    const LayerDecisions& decisions = rollout.decisions[static_cast<size_t>(layer)];
    const Tensor& hidden = rollout.hidden[static_cast<size_t>(layer)];
    const std::span<const float> rows(hidden.data(), static_cast<size_t>(hidden.numel()));
    const LayerWork& w = work[static_cast<size_t>(layer)];
    const double* s = sums.data() + layer * kSums;
    const double coefficient = controller.config().value_coefficient;
    const double valid = std::max(s[valid_count], 1.0), terminations = std::max(s[termination_count], 1.0);
    const double selections = std::max(s[selection_count], 1.0);
    const double termination_rms = std::sqrt(s[termination_square] / terminations) + 1e-8;
    const double selection_rms = std::sqrt(s[selection_square] / selections) + 1e-8;
    const int64_t experts = controller.num_experts(), k_hat = controller.config().k_hat;

    std::vector<float> d_beta(static_cast<size_t>(count), 0.0f), d_q(static_cast<size_t>(count), 0.0f),
        d_v(static_cast<size_t>(count), 0.0f), d_selection(static_cast<size_t>(count * experts), 0.0f);
    std::vector<float> gradient(static_cast<size_t>(experts));
    double termination_loss = 0, selection_loss = 0;
    for (int64_t i = 0; i < count; ++i) {
      if (!w.valid[static_cast<size_t>(i)]) continue;
      const double weight = weight_at(static_cast<size_t>(i));
      d_v[i] = static_cast<float>(coefficient * weight * (w.current.v[i] - w.v_target[i]) / valid);
      d_q[i] = static_cast<float>(coefficient * weight * (w.current.q[i] - w.q_target[i]) / valid);
      if (i % time == 0) continue;
      const double termination = w.termination_advantage[i] / termination_rms;
      d_beta[i] = static_cast<float>(weight * termination / terminations);
      termination_loss += weight * w.previous.beta[i] * termination;
      if (decisions.terminated[static_cast<size_t>(i)]) {
        const double advantage = w.selection_advantage[i] / selection_rms;
        const std::span<const float> logits(w.current.selection_logits.data() + i * experts, static_cast<size_t>(experts));
        const std::span<const int32_t> tuple(decisions.selected_tuples.data() + i * k_hat, static_cast<size_t>(k_hat));
        plackett_luce_gradient(logits, tuple, gradient);
        selection_loss -= weight * plackett_luce_log_probability(logits, tuple) * advantage;
        for (int64_t e = 0; e < experts; ++e) {
          d_selection[static_cast<size_t>(i * experts + e)] =
              static_cast<float>(-controller.config().selection_coefficient * weight * advantage * gradient[e] / selections);
        }
      }
    }
    controller.backward(w.previous, rows, decisions.previous_masks, d_beta, {}, {}, {});
    controller.backward(w.current, rows, decisions.masks, {}, d_q, d_v, d_selection);
    double logged[2] = {termination_loss, selection_loss};
    world_.all_reduce_sum(std::span<double>(logged, 2));
    LayerLosses& out = losses[static_cast<size_t>(layer)];
    out.value = s[value_loss] / valid;
    out.q_value = s[q_loss] / valid;
    out.termination = logged[0] / terminations;
    out.selection = logged[1] / selections;
    out.termination_probability = s[beta_sum] / terminations;
  }
  return losses;
}

}  // namespace temoe
