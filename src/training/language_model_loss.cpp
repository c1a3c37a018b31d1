#include "src/training/language_model_loss.hpp"

#include <algorithm>
#include <cmath>

#include "src/core/error.hpp"

namespace temoe {

double next_token_cross_entropy(Backend& backend, const Tensor& logits, std::span<const int32_t> targets,
                                int64_t global_tokens, Tensor& grad_logits) {
  TEMOE_CHECK(global_tokens > 0, "next_token_cross_entropy: the global batch has " << global_tokens << " tokens");
  const int64_t vocab = logits.shape().back();
  const int64_t count = logits.numel() / vocab;
  Tensor losses({count});
  Tensor flat_grads = grad_logits.reshaped({count, vocab});
  backend.cross_entropy(logits.reshaped({count, vocab}), targets, static_cast<float>(1.0 / static_cast<double>(global_tokens)),
                        losses, flat_grads);
  double total = 0.0;
  const auto values = losses.to_vector();
  for (const float value : values) total += value;  // in token order: the same on every run
  return total;
}

RouterStatistics router_statistics(const ActivationTape& tape, int64_t num_experts, int64_t top_k) {
  RouterStatistics statistics;
  statistics.layers = static_cast<int64_t>(tape.layers.size());
  statistics.experts = num_experts;
  statistics.routed.assign(static_cast<size_t>(statistics.layers * num_experts), 0.0);
  statistics.probability_sums.assign(statistics.routed.size(), 0.0);
  const int64_t count = tape.batch * tape.time;
  for (int64_t layer = 0; layer < statistics.layers; ++layer) {
    const MoeTape& moe = tape.layers[static_cast<size_t>(layer)].moe;
    TEMOE_CHECK(static_cast<int64_t>(moe.chosen.size()) == count * top_k,
                "router_statistics: layer " << layer << " chose " << moe.chosen.size() << " experts for " << count
                                            << " tokens x k = " << top_k);
    double* routed = statistics.routed.data() + layer * num_experts;
    double* sums = statistics.probability_sums.data() + layer * num_experts;
    for (const int32_t expert : moe.chosen) routed[expert] += 1.0;
    const std::vector<float> probabilities = moe.probabilities.to_vector();
    for (int64_t token = 0; token < count; ++token) {
      for (int64_t e = 0; e < num_experts; ++e) sums[e] += probabilities[static_cast<size_t>(token * num_experts + e)];
    }
  }
  return statistics;
}

LoadBalancingLoss load_balancing_loss(std::span<const double> global_routed, const RouterStatistics& local,
                                      int64_t global_tokens, int64_t top_k, double coefficient) {
  const int64_t layers = local.layers, experts = local.experts;
  TEMOE_CHECK(static_cast<int64_t>(global_routed.size()) == layers * experts,
              "load_balancing_loss: " << global_routed.size() << " routed counts for " << layers << " layers x "
                                      << experts << " experts");
  TEMOE_CHECK(global_tokens > 0 && top_k > 0, "load_balancing_loss: " << global_tokens << " tokens, k = " << top_k);
  LoadBalancingLoss loss;
  loss.fractions.resize(global_routed.size());
  loss.probability_grads.assign(static_cast<size_t>(layers), std::vector<float>(static_cast<size_t>(experts)));
  const double slots = static_cast<double>(global_tokens) * static_cast<double>(top_k);
  const double scale = layers > 0 ? coefficient * static_cast<double>(experts) / static_cast<double>(layers) : 0.0;
  for (int64_t layer = 0; layer < layers; ++layer) {
    for (int64_t e = 0; e < experts; ++e) {
      const auto index = static_cast<size_t>(layer * experts + e);
      const double fraction = global_routed[index] / slots;
      loss.fractions[index] = fraction;
      loss.value += scale * fraction * local.probability_sums[index] / static_cast<double>(global_tokens);
      loss.probability_grads[static_cast<size_t>(layer)][static_cast<size_t>(e)] =
          static_cast<float>(scale * fraction / static_cast<double>(global_tokens));
    }
  }
  return loss;
}

RoutingLocalityLoss routing_locality_loss(const ActivationTape& tape, int64_t window, int64_t global_windows,
                                          double coefficient) {
  const int64_t layers = static_cast<int64_t>(tape.layers.size()), batch = tape.batch, time = tape.time;
  TEMOE_CHECK(window >= 1 && time % window == 0,
              "routing_locality_loss: window " << window << " does not divide the sequence length " << time);
  TEMOE_CHECK(global_windows > 0, "routing_locality_loss: " << global_windows << " global windows");
  RoutingLocalityLoss loss;
  loss.probability_grads.resize(static_cast<size_t>(layers));
  loss.window_entropy.assign(static_cast<size_t>(layers), 0.0);
  const double scale = layers > 0 ? coefficient / static_cast<double>(layers * global_windows) : 0.0;
  const int64_t local_windows = batch * (time / window);
  for (int64_t layer = 0; layer < layers; ++layer) {
    const Tensor& probabilities = tape.layers[static_cast<size_t>(layer)].moe.probabilities;
    TEMOE_CHECK(probabilities.rank() == 2 && probabilities.dim(0) == batch * time,
                "routing_locality_loss: layer " << layer << " probabilities " << shape_string(probabilities.shape())
                                                << " for " << batch << " x " << time << " tokens");
    const int64_t experts = probabilities.dim(1);
    const float* p = probabilities.data();
    // With the term off only the entropies are wanted (they are logged): no gradient rows.
    std::vector<float>& grads = loss.probability_grads[static_cast<size_t>(layer)];
    if (coefficient != 0.0) grads.assign(static_cast<size_t>(batch * time * experts), 0.0f);
    std::vector<double> mean(static_cast<size_t>(experts));
    for (int64_t first = 0; first < batch * time; first += window) {
      std::fill(mean.begin(), mean.end(), 0.0);
      for (int64_t t = first; t < first + window; ++t) {
        for (int64_t e = 0; e < experts; ++e) mean[static_cast<size_t>(e)] += p[t * experts + e];
      }
      double entropy = 0.0;
      for (int64_t e = 0; e < experts; ++e) {
        // A softmax in fp32 can underflow to 0; 0 log 0 = 0, and the floor keeps log finite.
        const double q = std::max(mean[static_cast<size_t>(e)] / static_cast<double>(window), 1e-30);
        entropy -= q * std::log(q);
        const auto grad = static_cast<float>(-scale * (std::log(q) + 1.0) / static_cast<double>(window));
        if (!grads.empty()) {
          for (int64_t t = first; t < first + window; ++t) grads[static_cast<size_t>(t * experts + e)] = grad;
        }
      }
      loss.value += scale * entropy;
      loss.window_entropy[static_cast<size_t>(layer)] += entropy / static_cast<double>(local_windows);
    }
  }
  return loss;
}

}  // namespace temoe
