#pragma once
// Loads a model for a command: config.json, the weights this rank holds, a backend, and the
// expert executor that fits the process grid.
#include <filesystem>
#include <memory>

#include "src/model/moe_transformer.hpp"
#include "src/model/safetensors_checkpoint.hpp"

namespace temoe::launch {

struct LoadedModel {
  ModelConfig config;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ExpertExecutor> experts;
  std::unique_ptr<MoeTransformer> transformer;
};

// Reads config.json and all weights of `directory` on this process (no expert parallelism).
std::unique_ptr<LoadedModel> load_local_model(const std::filesystem::path& directory, Device device);

}  // namespace temoe::launch
