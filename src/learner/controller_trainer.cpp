#include "src/learner/controller_trainer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "optim/gradient_clipping.hpp"
#include "parallel/device_all_reduce.hpp"
#include "src/core/error.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/routing_statistics.hpp"
#include "src/learner/student_rollout.hpp"

namespace temoe {

std::vector<OptionController> make_controllers(ParameterSet& parameters, const ModelConfig& model,
                                               const ControllerConfig& config, uint64_t seed) {
  std::vector<OptionController> controllers;
  for (int64_t layer = 0; layer < model.num_layers; ++layer) {
    // Controllers on models that mix dense and MoE layers would need a layer map the rollouts do
    // not have yet; refuse such models plainly instead of indexing a router that is not there.
    TEMOE_CHECK(model.is_moe_layer(layer), "controllers: layer " << layer << " of the model is a dense layer "
                                           "(mlp_only_layers / decoder_sparse_step); temoe trains controllers only on "
                                           "models whose every layer is an MoE layer");
    controllers.emplace_back(parameters, layer, model.hidden_size, model.num_experts, config, seed);
  }
  return controllers;
}

ControllerTrainer::ControllerTrainer(MoeTransformer& model, const TrainerConfig& config, Communicator& world)
    : model_(model), config_(config), world_(world) {
  TEMOE_CHECK(config.controller.k_hat >= model.config().top_k,
              "controller.k_hat = " << config.controller.k_hat << " is below the router's k = " << model.config().top_k);
  controllers_ = make_controllers(parameters_, model.config(), config.controller, config.seed);
  optimizer_ = std::make_unique<AdamW>(parameters_, config.optimizer);
  TEMOE_CHECK(config.optimizer.learning_rate > 0,
              "train.learning_rate = " << config.optimizer.learning_rate << ": expected a positive learning rate");
  const double selection_scale = config.controller.selection_learning_rate / config.optimizer.learning_rate;
  for (size_t i = 0; i < parameters_.parameters().size(); ++i) {
    const std::string& name = parameters_.parameters()[i].name;
    if (is_selection_parameter(name)) optimizer_->set_learning_rate_scale(i, selection_scale);
    if (is_value_statistic(name)) optimizer_->set_learning_rate_scale(i, 0.0);  // set by the learner, not by AdamW
  }
}

void ControllerTrainer::reduce_gradients_on(Communicator& device_world, Device device) {
  TEMOE_CHECK(device_world.size() == world_.size() && device_world.rank() == world_.rank(),
              "rank " << world_.rank() << ": a device communicator of " << device_world.size() << " ranks (this rank "
                      << device_world.rank() << ") for a world of " << world_.size());
  gradient_world_ = &device_world;
  gradient_device_ = device;
}

std::vector<double> communication_costs(const Rollout& rollout, double cost_per_rank, std::span<const int> expert_owners,
                                        int home_rank) {
  if (cost_per_rank == 0 || expert_owners.empty()) return {};
  std::vector<double> costs;
  for (const LayerDecisions& decisions : rollout.decisions) {
    const int64_t k_hat = decisions.k_hat;
    for (size_t row = 0; row * static_cast<size_t>(k_hat) < decisions.masks.size(); ++row) {
      uint64_t ranks = 0;  // expert-parallel groups are at most 64 ranks wide here
      for (int64_t j = 0; j < k_hat; ++j) {
        const int32_t expert = decisions.masks[row * static_cast<size_t>(k_hat) + static_cast<size_t>(j)];
        ranks |= uint64_t{1} << expert_owners[static_cast<size_t>(expert)];
      }
      ranks &= ~(uint64_t{1} << home_rank);
      costs.push_back(cost_per_rank * std::popcount(ranks));
    }
  }
  return costs;
}

StepMetrics ControllerTrainer::step(const data::SequenceBatch& batch, int64_t step) {
  const ModelConfig& model_config = model_.config();
  const int64_t layers = model_config.num_layers, count = batch.batch * batch.time;
  const std::span<const int64_t> sequence_ids(batch.global_index);

  const SelectionLocality locality{config_.expert_owners, config_.home_rank};
  ControllerPolicy policy(controllers_, /*sample=*/true, config_.seed, locality);
  Rollout teacher, student;
  TokenScores scores;
  std::span<const uint8_t> document_ends(batch.document_ends);
  std::optional<SampledRollout> sampled;
  std::vector<uint8_t> no_document_ends;
  if (config_.rollout == RolloutMode::teacher_forced) {
    teacher = run_rollout(model_, batch.tokens, batch.batch, batch.time, nullptr, sequence_ids, step);
    student = run_rollout(model_, batch.tokens, batch.batch, batch.time, &policy, sequence_ids, step);
    scores = score_tokens(model_.backend_, teacher.logits, student.logits, batch.targets, config_.reward);
  } else {
    sampled = run_sampled_rollout(model_, policy, batch, config_.sampled, config_.seed, step);
    teacher = std::move(sampled->teacher);
    student = std::move(sampled->student);
    scores = score_tokens(model_.backend_, teacher.logits, student.logits, sampled->targets, config_.reward);
    // A generated continuation never ends its document: its last position bootstraps.
    no_document_ends.assign(static_cast<size_t>(count), 0);
    document_ends = no_document_ends;
  }

  parameters_.zero_gradients();
  // The learner's statistics step (PopArt) rescales Q's output layer before the gradients are
  // known; a step that turns out non-finite must leave every value as it was, so keep them.
  std::vector<Tensor> values_before;
  if (config_.controller.value_statistics_rate != 0) {
    for (const Parameter& parameter : parameters_.parameters()) values_before.push_back(parameter.value.clone());
  }
  OptionCriticLearner learner(controllers_, world_, locality);
  StepMetrics metrics;
  metrics.step = step;
  const std::vector<double> layer_costs = communication_costs(student, config_.controller.communication_cost,
                                                              config_.expert_owners, config_.home_rank);
  metrics.losses = learner.learn(student, scores.reward, document_ends, batch.batch, batch.time,
                                                sampled ? std::span<const double>(sampled->importance_weights)
                                                        : std::span<const double>(),
                                                layer_costs);

  // Gradients of the global mean: every rank added its share, the sum over ranks is the total.
  // One extra element carries this rank's verdict on its own losses and rewards into the sum.
  std::vector<float> gradients = parameters_.flatten_gradients();
  bool locally_finite = std::all_of(scores.reward.begin(), scores.reward.end(), [](double r) { return std::isfinite(r); });
  for (const LayerLosses& layer : metrics.losses) {
    locally_finite = locally_finite && std::isfinite(layer.value) && std::isfinite(layer.q_value) &&
                     std::isfinite(layer.termination) && std::isfinite(layer.selection);
  }
  if (config_.inject_nonfinite_step >= 0 && step >= config_.inject_nonfinite_step &&
      step < config_.inject_nonfinite_step + config_.inject_nonfinite_count && world_.rank() == config_.inject_nonfinite_rank) {
    locally_finite = false;
  }
  gradients.push_back(locally_finite ? 0.0f : std::numeric_limits<float>::quiet_NaN());
  if (gradient_world_ != nullptr) {
    all_reduce_sum_on_device(*gradient_world_, gradient_device_, gradients);
  } else {
    world_.all_reduce_sum(std::span<float>(gradients));
  }
  // Every rank now holds the same bits, so every rank takes the same decision: a non-finite value
  // anywhere skips the update rather than writing NaN into the parameters and moments, which the
  // next checkpoints would commit over the last good ones.
  metrics.skipped_nonfinite = !std::all_of(gradients.begin(), gradients.end(), [](float g) { return std::isfinite(g); });
  gradients.pop_back();
  if (metrics.skipped_nonfinite) {
    parameters_.zero_gradients();
    for (size_t i = 0; i < values_before.size(); ++i) {
      Tensor& value = parameters_.parameters()[i].value;
      std::copy(values_before[i].data(), values_before[i].data() + value.numel(), value.data());
    }
    metrics.gradient_norm = std::numeric_limits<double>::quiet_NaN();
  } else {
    parameters_.unflatten_gradients(gradients);
    metrics.gradient_norm = clip_gradient_norm(parameters_, config_.clip_norm);
    optimizer_->step();
    for (auto& controller : controllers_) controller.clamp_termination_bias();
  }

  // Figures, summed over ranks: reward, KL, tokens, then per layer the routing counts.
  std::vector<double> sums = {0, 0, static_cast<double>(count)};
  for (int64_t i = 0; i < count; ++i) {
    sums[0] += scores.reward[static_cast<size_t>(i)];
    sums[1] += scores.kl[static_cast<size_t>(i)];
  }
  std::vector<RoutingCounts> counts;
  for (int64_t layer = 0; layer < layers; ++layer) {
    const auto l = static_cast<size_t>(layer);
    counts.push_back(count_masked_routing(student.decisions[l], student.chosen_experts[l], batch.batch, batch.time,
                                          model_config.num_experts, model_config.top_k));
    const RoutingCounts teacher_counts = count_top_k_routing(teacher.chosen_experts[l], batch.batch, batch.time,
                                                             model_config.num_experts, model_config.top_k);
    sums.insert(sums.end(), {counts.back().transitions, counts.back().switches, counts.back().options,
                             counts.back().tokens, teacher_counts.switches});
    sums.insert(sums.end(), counts.back().expert_uses.begin(), counts.back().expert_uses.end());
  }
  if (sampled) {
    double weight_sum = 0, drawn = 0;
    for (size_t i = 0; i < sampled->generated.size(); ++i) {
      if (!sampled->generated[i]) continue;
      weight_sum += sampled->importance_weights[i];
      drawn += 1;
    }
    sums.insert(sums.end(), {weight_sum, drawn});
  }
  world_.all_reduce_sum(std::span<double>(sums));
  if (sampled) metrics.importance_weight_mean = sums[sums.size() - 2] / std::max(sums.back(), 1.0);
  metrics.tokens = static_cast<int64_t>(sums[2]);
  metrics.reward = sums[0] / std::max(sums[2], 1.0);
  metrics.kl = sums[1] / std::max(sums[2], 1.0);
  double transitions = 0, switches = 0, teacher_switches = 0;
  size_t offset = 3;
  for (int64_t layer = 0; layer < layers; ++layer) {
    RoutingCounts global;
    global.transitions = sums[offset];
    global.switches = sums[offset + 1];
    global.options = sums[offset + 2];
    global.tokens = sums[offset + 3];
    teacher_switches += sums[offset + 4];
    global.expert_uses.assign(sums.begin() + static_cast<std::ptrdiff_t>(offset + 5),
                              sums.begin() + static_cast<std::ptrdiff_t>(offset + 5 + static_cast<size_t>(model_config.num_experts)));
    offset += 5 + static_cast<size_t>(model_config.num_experts);
    transitions += global.transitions;
    switches += global.switches;
    metrics.switch_rate_per_layer.push_back(global.switch_rate());
    metrics.mean_option_duration_per_layer.push_back(global.mean_option_duration());
    metrics.utilization_entropy_per_layer.push_back(global.utilization_entropy());
  }
  metrics.switch_rate = transitions > 0 ? switches / transitions : 0.0;
  metrics.teacher_switch_rate = transitions > 0 ? teacher_switches / transitions : 0.0;
  return metrics;
}

}  // namespace temoe
