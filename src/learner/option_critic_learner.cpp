#include "src/learner/option_critic_learner.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "src/core/error.hpp"
#include "src/learner/advantage_estimation.hpp"
#include "src/learner/plackett_luce.hpp"

namespace temoe {

namespace {

// The controller's outputs a layer's targets and gradients are made of.
struct LayerEvaluations {
  ControllerEvaluation previous;  // at (h_t, w_{t-1}): beta_t and Q(h_t, w_{t-1})
  ControllerEvaluation current;   // at (h_t, w_t): Q(h_t, w_t) and the selection logits
  ControllerEvaluation reload;    // at (h_t, w_hat_t): V_Omega(h_t)
};

std::span<const float> hidden_rows(const Rollout& rollout, int64_t layer) {
  const Tensor& hidden = rollout.hidden[static_cast<size_t>(layer)];
  return {hidden.data(), static_cast<size_t>(hidden.numel())};
}

std::vector<LayerEvaluations> evaluate_layers(const std::vector<OptionController>& controllers, const Rollout& rollout,
                                              const SelectionLocality& locality, int64_t count) {
  const auto layers = static_cast<int64_t>(controllers.size());
  TEMOE_CHECK(static_cast<int64_t>(rollout.decisions.size()) == layers && static_cast<int64_t>(rollout.hidden.size()) == layers &&
                  static_cast<int64_t>(rollout.router_logits.size()) == layers,
              "learner: the rollout has decisions for " << rollout.decisions.size() << " layers, hidden states for "
                                                        << rollout.hidden.size() << ", router logits for "
                                                        << rollout.router_logits.size() << "; " << layers << " controllers");
  std::vector<LayerEvaluations> evaluations(static_cast<size_t>(layers));
  for (int64_t layer = 0; layer < layers; ++layer) {
    const OptionController& controller = controllers[static_cast<size_t>(layer)];
    const LayerDecisions& decisions = rollout.decisions[static_cast<size_t>(layer)];
    const Tensor& router_logits = rollout.router_logits[static_cast<size_t>(layer)];
    const int64_t experts = controller.num_experts(), k_hat = controller.config().k_hat;
    TEMOE_CHECK(router_logits.numel() == count * experts && static_cast<int64_t>(decisions.masks.size()) == count * k_hat,
                "learner layer " << layer << ": " << router_logits.numel() << " router logits and " << decisions.masks.size()
                                 << " mask ids for " << count << " positions x " << experts << " experts, k_hat " << k_hat);
    HiddenProjection projection = controller.project(
        hidden_rows(rollout, layer), count, std::span<const float>(router_logits.data(), static_cast<size_t>(count * experts)));
    apply_selection_locality(projection.selection_logits, experts, locality, controller.config().selection_locality_bias);
    // w_hat_t: what a reload at t would load with the greedy selection (ascending ids, as held masks are).
    std::vector<int32_t> reload_masks(static_cast<size_t>(count * k_hat));
    for (int64_t i = 0; i < count; ++i) {
      std::vector<int32_t> top = greedy_top(
          std::span<const float>(projection.selection_logits.data() + i * experts, static_cast<size_t>(experts)), k_hat);
      std::sort(top.begin(), top.end());
      std::copy(top.begin(), top.end(), reload_masks.begin() + i * k_hat);
    }
    LayerEvaluations& out = evaluations[static_cast<size_t>(layer)];
    out.previous = controller.evaluate_rows(projection, {}, decisions.previous_masks);
    out.current = controller.evaluate_rows(projection, {}, decisions.masks);
    out.reload = controller.evaluate_rows(projection, {}, reload_masks);
  }
  return evaluations;
}

std::vector<LayerTargets> targets_of(const std::vector<OptionController>& controllers, const Rollout& rollout,
                                     const std::vector<LayerEvaluations>& evaluations, std::span<const double> rewards,
                                     std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                     std::span<const double> layer_costs, Communicator& world) {
  const auto layers = static_cast<int64_t>(controllers.size());
  const int64_t count = batch * time;
  TEMOE_CHECK(static_cast<int64_t>(rewards.size()) == count && static_cast<int64_t>(document_end.size()) == count,
              "learner: " << rewards.size() << " rewards and " << document_end.size() << " end flags for " << count << " positions");
  TEMOE_CHECK(layer_costs.empty() || static_cast<int64_t>(layer_costs.size()) == layers * count,
              "learner: " << layer_costs.size() << " layer costs for " << layers << " layers x " << count << " positions");
  std::vector<LayerTargets> all(static_cast<size_t>(layers));
  std::vector<double> counts(static_cast<size_t>(layers * 3), 0.0);
  for (int64_t layer = 0; layer < layers; ++layer) {
    const ControllerConfig& config = controllers[static_cast<size_t>(layer)].config();
    const LayerDecisions& decisions = rollout.decisions[static_cast<size_t>(layer)];
    const LayerEvaluations& e = evaluations[static_cast<size_t>(layer)];
    LayerTargets& targets = all[static_cast<size_t>(layer)];
    targets.q_target.assign(static_cast<size_t>(count), 0.0);
    targets.valid.assign(static_cast<size_t>(count), 0);
    targets.reload_value.assign(e.reload.q.begin(), e.reload.q.end());
    targets.termination_advantage.assign(static_cast<size_t>(count), 0.0);
    targets.selection_advantage.assign(static_cast<size_t>(count), 0.0);
    std::vector<double> layer_rewards(rewards.begin(), rewards.end());
    if (!layer_costs.empty()) {
      for (int64_t i = 0; i < count; ++i) layer_rewards[static_cast<size_t>(i)] -= layer_costs[static_cast<size_t>(layer * count + i)];
    }
    const auto as_double = [](const std::vector<float>& values) { return std::vector<double>(values.begin(), values.end()); };
    const std::vector<double> q_previous = as_double(e.previous.q), beta = as_double(e.previous.beta);
    const std::vector<double> reload_value = as_double(e.reload.q);
    double* c = counts.data() + layer * 3;
    for (int64_t b = 0; b < batch; ++b) {
      const size_t first = static_cast<size_t>(b * time), length = static_cast<size_t>(time);
      const auto part = [&](const auto& values) { return std::span(values).subspan(first, length); };
      const OptionValueTargets sequence = option_value_targets(
          {part(layer_rewards), part(q_previous), part(beta), part(reload_value), part(decisions.terminated),
           document_end.subspan(first, length)},
          config.gamma, config.lambda, config.eta);
      for (int64_t t = 0; t < time; ++t) {
        const size_t i = first + static_cast<size_t>(t);
        targets.q_target[i] = sequence.q_target[static_cast<size_t>(t)];
        targets.valid[i] = sequence.valid[static_cast<size_t>(t)];
        if (!targets.valid[i]) continue;
        c[0] += 1;
        if (t == 0) continue;
        targets.termination_advantage[i] = q_previous[i] - reload_value[i] + config.eta;
        c[1] += 1;
        if (decisions.terminated[i]) {
          targets.selection_advantage[i] = targets.q_target[i] - reload_value[i];
          c[2] += 1;
        }
      }
    }
  }
  world.all_reduce_sum(std::span<double>(counts));
  for (int64_t layer = 0; layer < layers; ++layer) {
    LayerTargets& targets = all[static_cast<size_t>(layer)];
    targets.valid_count = counts[static_cast<size_t>(layer * 3)];
    targets.termination_count = counts[static_cast<size_t>(layer * 3 + 1)];
    targets.selection_count = counts[static_cast<size_t>(layer * 3 + 2)];
  }
  return all;
}

// Global sums of the logged losses per layer, in this order.
enum Sum { q_loss, reload_loss, termination_loss, selection_loss, beta_sum, advantage_sum, kSums };

std::vector<LayerLosses> gradients_of(std::vector<OptionController>& controllers, const Rollout& rollout,
                                      const std::vector<LayerEvaluations>& evaluations,
                                      const std::vector<LayerTargets>& targets, int64_t batch, int64_t time,
                                      std::span<const double> weights, Communicator& world) {
  const auto layers = static_cast<int64_t>(controllers.size());
  const int64_t count = batch * time;
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == layers, "learner: targets for " << targets.size() << " layers, " << layers << " controllers");
  TEMOE_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == count,
              "learner: " << weights.size() << " importance weights for " << count << " positions");
  // Multiplying by exactly 1 changes no bit, so unweighted runs are what they were before weights.
  const auto weight_at = [&](size_t i) { return weights.empty() ? 1.0 : weights[i]; };
  std::vector<double> sums(static_cast<size_t>(layers * kSums), 0.0);
  for (int64_t layer = 0; layer < layers; ++layer) {
    OptionController& controller = controllers[static_cast<size_t>(layer)];
    const ControllerConfig& config = controller.config();
    const LayerDecisions& decisions = rollout.decisions[static_cast<size_t>(layer)];
    const LayerEvaluations& e = evaluations[static_cast<size_t>(layer)];
    const LayerTargets& target = targets[static_cast<size_t>(layer)];
    TEMOE_CHECK(static_cast<int64_t>(target.q_target.size()) == count,
                "learner layer " << layer << ": targets for " << target.q_target.size() << " positions, " << count << " in the rollout");
    const double valid = std::max(target.valid_count, 1.0), terminations = std::max(target.termination_count, 1.0);
    const double selections = std::max(target.selection_count, 1.0);
    const int64_t experts = controller.num_experts(), k_hat = config.k_hat;
    const double scale = controller.value_scale();
    double* s = sums.data() + layer * kSums;
    std::vector<float> d_beta(static_cast<size_t>(count), 0.0f), d_q(static_cast<size_t>(count), 0.0f),
        d_selection(static_cast<size_t>(count * experts), 0.0f);
    std::vector<float> gradient(static_cast<size_t>(experts));
    for (int64_t i = 0; i < count; ++i) {
      const auto at = static_cast<size_t>(i);
      if (!target.valid[at]) continue;
      const double weight = weight_at(at);
      // The regression is in PopArt's unit scale: 0.5 ((Q - G) / sigma)^2.
      const double q_error = (double(e.current.q[at]) - target.q_target[at]) / scale;
      d_q[at] = static_cast<float>(config.value_coefficient * weight * q_error / (valid * scale));
      s[q_loss] += weight * 0.5 * q_error * q_error;
      if (i % time == 0) continue;
      const double advantage = target.termination_advantage[at];
      d_beta[at] = static_cast<float>(weight * advantage / terminations);
      s[termination_loss] += weight * double(e.previous.beta[at]) * advantage;
      s[beta_sum] += e.previous.beta[at];
      s[advantage_sum] += advantage;
      if (!decisions.terminated[at]) continue;
      const double reload_error = (target.reload_value[at] - target.q_target[at]) / scale;
      s[reload_loss] += weight * 0.5 * reload_error * reload_error;
      const double selection_advantage = target.selection_advantage[at];
      const std::span<const float> logits(e.current.selection_logits.data() + i * experts, static_cast<size_t>(experts));
      const std::span<const int32_t> tuple(decisions.selected_tuples.data() + i * k_hat, static_cast<size_t>(k_hat));
      s[selection_loss] -= weight * plackett_luce_log_probability(logits, tuple) * selection_advantage;
      if (config.selection_coefficient == 0) continue;
      plackett_luce_gradient(logits, tuple, gradient);
      for (int64_t x = 0; x < experts; ++x) {
        d_selection[static_cast<size_t>(i * experts + x)] =
            static_cast<float>(-config.selection_coefficient * weight * selection_advantage * gradient[x] / selections);
      }
    }
    const std::span<const float> rows = hidden_rows(rollout, layer);
    controller.backward(e.previous, rows, decisions.previous_masks, d_beta, {}, {});
    controller.backward(e.current, rows, decisions.masks, {}, d_q, config.selection_coefficient == 0 ? std::span<const float>() : d_selection);
  }
  world.all_reduce_sum(std::span<double>(sums));
  std::vector<LayerLosses> losses(static_cast<size_t>(layers));
  for (int64_t layer = 0; layer < layers; ++layer) {
    const LayerTargets& target = targets[static_cast<size_t>(layer)];
    const double* s = sums.data() + layer * kSums;
    const double valid = std::max(target.valid_count, 1.0), terminations = std::max(target.termination_count, 1.0);
    const double selections = std::max(target.selection_count, 1.0);
    LayerLosses& out = losses[static_cast<size_t>(layer)];
    out.q_value = s[q_loss] / valid;
    out.value = s[reload_loss] / selections;
    out.termination = s[termination_loss] / terminations;
    out.selection = s[selection_loss] / selections;
    out.termination_probability = s[beta_sum] / terminations;
    out.termination_advantage = s[advantage_sum] / terminations;
  }
  return losses;
}

}  // namespace

OptionCriticLearner::OptionCriticLearner(std::vector<OptionController>& controllers, Communicator& world,
                                         SelectionLocality locality)
    : controllers_(controllers), world_(world), locality_(std::move(locality)) {}

std::vector<LayerTargets> OptionCriticLearner::targets(const Rollout& rollout, std::span<const double> rewards,
                                                       std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                                       std::span<const double> layer_costs) const {
  const auto evaluations = evaluate_layers(controllers_, rollout, locality_, batch * time);
  return targets_of(controllers_, rollout, evaluations, rewards, document_end, batch, time, layer_costs, world_);
}

std::vector<LayerLosses> OptionCriticLearner::accumulate_gradients(const Rollout& rollout,
                                                                   const std::vector<LayerTargets>& targets, int64_t batch,
                                                                   int64_t time, std::span<const double> weights) {
  const auto evaluations = evaluate_layers(controllers_, rollout, locality_, batch * time);
  return gradients_of(controllers_, rollout, evaluations, targets, batch, time, weights, world_);
}

std::vector<LayerLosses> OptionCriticLearner::accumulate_gradients(const Rollout& rollout, std::span<const double> rewards,
                                                                   std::span<const uint8_t> document_end, int64_t batch,
                                                                   int64_t time, std::span<const double> weights,
                                                                   std::span<const double> layer_costs) {
  // One evaluation serves both: the targets are taken at the parameters the gradients are.
  const auto evaluations = evaluate_layers(controllers_, rollout, locality_, batch * time);
  const auto targets = targets_of(controllers_, rollout, evaluations, rewards, document_end, batch, time, layer_costs, world_);
  return gradients_of(controllers_, rollout, evaluations, targets, batch, time, weights, world_);
}

std::vector<LayerLosses> OptionCriticLearner::learn(const Rollout& rollout, std::span<const double> rewards,
                                                    std::span<const uint8_t> document_end, int64_t batch, int64_t time,
                                                    std::span<const double> weights, std::span<const double> layer_costs) {
  const auto evaluations = evaluate_layers(controllers_, rollout, locality_, batch * time);
  const auto targets = targets_of(controllers_, rollout, evaluations, rewards, document_end, batch, time, layer_costs, world_);
  // The statistics follow this batch's targets before the regression. PopArt keeps every output,
  // so the targets and the evaluations' values stay valid; the backward reads the rescaled layer.
  update_value_statistics(targets);
  return gradients_of(controllers_, rollout, evaluations, targets, batch, time, weights, world_);
}

void OptionCriticLearner::update_value_statistics(const std::vector<LayerTargets>& targets) {
  TEMOE_CHECK(targets.size() == controllers_.size(), "learner: targets for " << targets.size() << " layers, " << controllers_.size() << " controllers");
  std::vector<double> sums(targets.size() * 2, 0.0);
  for (size_t layer = 0; layer < targets.size(); ++layer) {
    for (size_t i = 0; i < targets[layer].q_target.size(); ++i) {
      if (!targets[layer].valid[i]) continue;
      sums[layer * 2] += targets[layer].q_target[i];
      sums[layer * 2 + 1] += targets[layer].q_target[i] * targets[layer].q_target[i];
    }
  }
  world_.all_reduce_sum(std::span<double>(sums));
  for (size_t layer = 0; layer < targets.size(); ++layer) {
    OptionController& controller = controllers_[layer];
    const double rate = controller.config().value_statistics_rate, count = targets[layer].valid_count;
    // A non-finite target (the step will be skipped) must not reach the statistics: every later Q
    // would be NaN. The sums are global, so every rank skips alike.
    if (rate == 0 || count == 0 || !std::isfinite(sums[layer * 2]) || !std::isfinite(sums[layer * 2 + 1])) continue;
    controller.update_value_statistics(sums[layer * 2] / count, sums[layer * 2 + 1] / count, rate);
  }
}

double total_loss(const std::vector<LayerLosses>& losses, const std::vector<OptionController>& controllers) {
  TEMOE_CHECK(losses.size() == controllers.size(), "total_loss: " << losses.size() << " layers of losses, " << controllers.size() << " controllers");
  double total = 0;
  for (size_t layer = 0; layer < losses.size(); ++layer) {
    const ControllerConfig& config = controllers[layer].config();
    total += config.value_coefficient * losses[layer].q_value + losses[layer].termination +
             config.selection_coefficient * losses[layer].selection;
  }
  return total;
}

}  // namespace temoe
