#pragma once
// A host model's twin on the GPU: the same weights uploaded (weights_on_device), the CUDA backend,
// local experts. For tests that run one computation on both and compare.
#include <memory>

#include "src/model/expert_executor.hpp"
#include "src/model/moe_transformer.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe::testing {

struct DeviceModel {
  explicit DeviceModel(const InMemoryModel& host)
      : weights(weights_on_device(host.weights, Device::cuda)),
        backend(make_backend(Device::cuda)),
        experts(*backend, weights),
        model(host.config, weights, *backend, experts) {}
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  LocalExperts experts;
  MoeTransformer model;  // refers to the members above: the struct never moves
};

}  // namespace temoe::testing
