#include "src/learner/option_critic_learner.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "src/core/error.hpp"
#include "src/learner/advantage_estimation.hpp"
#include "src/learner/controller_kernels.hpp"
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
    TEMOE_CHECK(static_cast<int64_t>(decisions.terminated.size()) == count,
                "learner layer " << layer << ": " << decisions.terminated.size() << " termination flags for " << count << " positions");
    controller_kernels::option_value_targets(Device::cpu, layer_rewards.data(), q_previous.data(), beta.data(),
                                             reload_value.data(), decisions.terminated.data(), document_end.data(), batch,
                                             time, config.gamma, config.lambda, config.eta, targets.q_target.data(),
                                             targets.valid.data());
    std::vector<double> flags(static_cast<size_t>(count * 3));
    controller_kernels::target_terms(Device::cpu, {count, time, config.eta, targets.valid.data(), decisions.terminated.data(),
                                                   targets.q_target.data(), q_previous.data(), reload_value.data(),
                                                   targets.termination_advantage.data(), targets.selection_advantage.data(),
                                                   flags.data()});
    controller_kernels::column_sums(Device::cpu, flags.data(), count, 3, counts.data() + layer * 3);
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

// Global sums of the logged losses per layer, in controller_kernels::LearnerSum's order.
using enum controller_kernels::LearnerSum;
constexpr int64_t kSums = controller_kernels::kLossTerms;

std::vector<LayerLosses> gradients_of(std::vector<OptionController>& controllers, const Rollout& rollout,
                                      const std::vector<LayerEvaluations>& evaluations,
                                      const std::vector<LayerTargets>& targets, int64_t batch, int64_t time,
                                      std::span<const double> weights, Communicator& world) {
  const auto layers = static_cast<int64_t>(controllers.size());
  const int64_t count = batch * time;
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == layers, "learner: targets for " << targets.size() << " layers, " << layers << " controllers");
  TEMOE_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == count,
              "learner: " << weights.size() << " importance weights for " << count << " positions");
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
    std::vector<float> d_beta(static_cast<size_t>(count)), d_q(static_cast<size_t>(count)),
        d_selection(config.selection_coefficient == 0 ? 0 : static_cast<size_t>(count * experts));
    std::vector<double> terms(static_cast<size_t>(count * controller_kernels::kLossTerms)),
        scratch(static_cast<size_t>(count * experts));
    controller_kernels::GradientPositions positions;
    positions.count = count;
    positions.time = time;
    positions.experts = experts;
    positions.k_hat = k_hat;
    positions.valid = target.valid.data();
    positions.terminated = decisions.terminated.data();
    positions.q_target = target.q_target.data();
    positions.termination_advantage = target.termination_advantage.data();
    positions.selection_advantage = target.selection_advantage.data();
    positions.reload_value = target.reload_value.data();
    positions.q_current = e.current.q.data();
    positions.beta_previous = e.previous.beta.data();
    positions.selection_logits = e.current.selection_logits.data();
    positions.tuples = decisions.selected_tuples.data();
    positions.weights = weights.empty() ? nullptr : weights.data();
    positions.valid_count = valid;
    positions.termination_count = terminations;
    positions.selection_count = selections;
    positions.value_scale = scale;
    positions.value_coefficient = config.value_coefficient;
    positions.selection_coefficient = config.selection_coefficient;
    positions.d_q = d_q.data();
    positions.d_beta = d_beta.data();
    positions.d_selection = d_selection.empty() ? nullptr : d_selection.data();
    positions.terms = terms.data();
    positions.scratch = scratch.data();
    controller_kernels::gradient_terms(Device::cpu, positions);
    controller_kernels::column_sums(Device::cpu, terms.data(), count, controller_kernels::kLossTerms,
                                    sums.data() + layer * kSums);
    const std::span<const float> rows = hidden_rows(rollout, layer);
    controller.backward(e.previous, rows, decisions.previous_masks, d_beta, {}, {});
    controller.backward(e.current, rows, decisions.masks, {}, d_q, d_selection);
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
