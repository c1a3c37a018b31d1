#include "src/training/training_step.hpp"

#include "src/core/error.hpp"
#include "src/training/gradient_reduction.hpp"
#include "src/training/language_model_loss.hpp"

namespace temoe {

StepLosses compute_gradients(TrainingModel& model, const TrainingCommunicators& communicators,
                             std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t batch,
                             int64_t time, int64_t global_tokens, const LossOptions& options) {
  TEMOE_CHECK(static_cast<int64_t>(targets.size()) == batch * time,
              "compute_gradients: " << targets.size() << " targets for batch " << batch << " x time " << time);
  const ModelConfig& config = model.config;
  model.parameters.all.zero_gradients();
  ActivationTape tape;
  const Tensor logits = model.transformer->forward(tokens, batch, time, tape);
  Tensor grad_logits(logits.shape());
  const double cross_entropy_sum = next_token_cross_entropy(*model.backend, logits, targets, global_tokens, grad_logits);

  // f_i must count the whole global batch's routing; the probabilities' sums stay local (each
  // rank's share of the loss and its gradient only involve its own tokens).
  const RouterStatistics statistics = router_statistics(tape, config.num_experts, config.top_k);
  std::vector<double> routed = statistics.routed;
  if (communicators.world && communicators.world->size() > 1) communicators.world->all_reduce_sum(std::span<double>(routed));
  const LoadBalancingLoss balance =
      load_balancing_loss(routed, statistics, global_tokens, config.top_k, options.load_balancing_coefficient);

  if (options.load_balancing_coefficient != 0.0) {
    model.transformer->backward(tape, grad_logits, balance.probability_grads);
  } else {
    model.transformer->backward(tape, grad_logits);
  }
  all_reduce_gradients(model.parameters, communicators);

  double sums[2] = {cross_entropy_sum, balance.value};
  if (communicators.world && communicators.world->size() > 1) communicators.world->all_reduce_sum(std::span<double>(sums, 2));
  StepLosses losses;
  losses.global_tokens = global_tokens;
  losses.cross_entropy = sums[0] / static_cast<double>(global_tokens);
  losses.load_balancing = sums[1];
  losses.total = losses.cross_entropy + losses.load_balancing;
  losses.expert_fractions = balance.fractions;
  return losses;
}

}  // namespace temoe
