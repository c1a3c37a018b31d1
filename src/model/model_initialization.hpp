#pragma once
// Random weights to pretrain from. Matrices are normal(0, std) (GPT-2 / Hugging Face
// initializer_range); the projections that write into the residual stream (o_proj, the experts'
// down_proj) are scaled by 1 / sqrt(2 L) (GPT-2, Radford et al. 2019) so the residual's variance
// does not grow with depth; norm weights are 1. A tensor's values depend only on the seed and its
// Hugging Face name, so a rank holding a slice of the experts draws exactly the full model's values.
#include <cstdint>

#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"

namespace temoe {

struct InitializationOptions {
  uint64_t seed = 1;
  double standard_deviation = 0.02;
};

ModelWeights initialize_model_weights(const ModelConfig& config, ExpertSet local_experts,
                                      const InitializationOptions& options);

}  // namespace temoe
