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

  // The windows' routing entropy is logged whenever the window divides the sequences, so that runs
  // with and without the term can be compared; it enters the loss only with a coefficient.
  const bool local_routing = options.routing_locality_coefficient != 0.0;
  const bool windowed = options.locality_window >= 1 && time % options.locality_window == 0 &&
                        global_tokens % options.locality_window == 0;
  TEMOE_CHECK(windowed || !local_routing, "compute_gradients: the routing-locality window " << options.locality_window
                                                                                            << " does not divide sequences of "
                                                                                            << time << " tokens");
  const int64_t global_windows = windowed ? global_tokens / options.locality_window : 0;
  const RoutingLocalityLoss locality =
      windowed ? routing_locality_loss(tape, options.locality_window, global_windows, options.routing_locality_coefficient)
               : RoutingLocalityLoss{};
  if (local_routing) {
    // Both terms' gradients as one row per token: the locality term's plus the balance's constant.
    std::vector<std::vector<float>> probability_grads = locality.probability_grads;
    if (options.load_balancing_coefficient != 0.0) {
      for (size_t layer = 0; layer < probability_grads.size(); ++layer) {
        const std::vector<float>& constant = balance.probability_grads[layer];
        std::vector<float>& rows = probability_grads[layer];
        for (size_t i = 0; i < rows.size(); ++i) rows[i] += constant[i % constant.size()];
      }
    }
    model.transformer->backward(tape, grad_logits, probability_grads);
  } else if (options.load_balancing_coefficient != 0.0) {
    model.transformer->backward(tape, grad_logits, balance.probability_grads);
  } else {
    model.transformer->backward(tape, grad_logits);
  }
  all_reduce_gradients(model.parameters, communicators);

  // The value shares, then (locality on) each layer's sum of window entropies, summed over ranks.
  std::vector<double> sums = {cross_entropy_sum, balance.value, locality.value};
  const int64_t local_windows = windowed ? batch * (time / options.locality_window) : 0;
  for (const double entropy : locality.window_entropy) sums.push_back(entropy * static_cast<double>(local_windows));
  if (communicators.world && communicators.world->size() > 1) communicators.world->all_reduce_sum(std::span<double>(sums));
  StepLosses losses;
  losses.global_tokens = global_tokens;
  losses.cross_entropy = sums[0] / static_cast<double>(global_tokens);
  losses.load_balancing = sums[1];
  losses.routing_locality = sums[2];
  losses.total = losses.cross_entropy + losses.load_balancing + losses.routing_locality;
  losses.expert_fractions = balance.fractions;
  for (size_t layer = 0; layer < locality.window_entropy.size(); ++layer) {
    losses.window_entropy.push_back(sums[3 + layer] / static_cast<double>(global_windows));
  }
  return losses;
}

}  // namespace temoe
