#pragma once
// A small model built in memory (no files), for tests of the forward and of rollouts: a preset's
// architecture with random weights, all experts local.
#include <memory>

#include "src/model/model_initialization.hpp"
#include "src/model/model_presets.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe::testing {

struct InMemoryModel {
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LocalExperts> experts;
  std::unique_ptr<MoeTransformer> model;  // refers to the members above: the struct never moves
};

// The "tiny" preset of `architecture`. Weights are normal(0, deviation): larger than the
// pretraining initialisation's 0.02 by default, so that attention, routing and logits are far from
// uniform and a wrong position or mask shows in the output.
inline std::unique_ptr<InMemoryModel> tiny_model(Architecture architecture, uint64_t seed, double deviation = 0.2) {
  auto built = std::make_unique<InMemoryModel>();
  built->config = model_preset(architecture, "tiny");
  InitializationOptions options;
  options.seed = seed;
  options.standard_deviation = deviation;
  built->weights = initialize_model_weights(built->config, {0, built->config.num_experts}, options);
  built->backend = make_backend(Device::cpu);
  built->experts = std::make_unique<LocalExperts>(*built->backend, built->weights);
  built->model = std::make_unique<MoeTransformer>(built->config, built->weights, *built->backend, *built->experts);
  return built;
}

}  // namespace temoe::testing
