#include "src/training/gradient_reduction.hpp"

#include <cmath>

namespace temoe {

namespace {

void all_reduce(ParameterSet& parameters, Communicator* communicator) {
  if (!communicator || communicator->size() == 1 || parameters.parameters().empty()) return;
  std::vector<float> flat = parameters.flatten_gradients();
  communicator->all_reduce_sum(std::span<float>(flat));
  parameters.unflatten_gradients(flat);
}

double squared_norm(const ParameterSet& parameters) {
  double sum = 0.0;
  for (const auto& parameter : parameters.parameters()) {
    const float* g = parameter.gradient.data();
    for (int64_t i = 0; i < parameter.gradient.numel(); ++i) sum += static_cast<double>(g[i]) * g[i];
  }
  return sum;
}

}  // namespace

void all_reduce_gradients(ModelParameters& parameters, const TrainingCommunicators& communicators) {
  all_reduce(parameters.dense, communicators.world);
  all_reduce(parameters.experts, communicators.data_parallel);
}

double global_gradient_norm(const ModelParameters& parameters, const TrainingCommunicators& communicators) {
  double expert_part = squared_norm(parameters.experts);
  if (communicators.expert_parallel && communicators.expert_parallel->size() > 1) {
    communicators.expert_parallel->all_reduce_sum(std::span<double>(&expert_part, 1));
  }
  return std::sqrt(squared_norm(parameters.dense) + expert_part);
}

double clip_global_gradient_norm(ModelParameters& parameters, const TrainingCommunicators& communicators,
                                 double max_norm) {
  const double norm = global_gradient_norm(parameters, communicators);
  if (!std::isfinite(norm)) return norm;
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient >= 1.0) return norm;
  const auto scale = static_cast<float>(coefficient);
  for (auto& parameter : parameters.all.parameters()) {
    float* g = parameter.gradient.data();
    for (int64_t i = 0; i < parameter.gradient.numel(); ++i) g[i] *= scale;
  }
  return norm;
}

}  // namespace temoe
