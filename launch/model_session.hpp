#pragma once
// Loads a model for a command on the process grid: config.json, the weights this rank holds (all
// dense tensors, its share of the experts), a backend, and the expert executor that fits the grid.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "parallel/process_grid.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/model/lora_adapters.hpp"
#include "src/model/moe_transformer.hpp"
#include "src/model/safetensors_checkpoint.hpp"

namespace temoe::launch {

struct LoadedModel {
  ModelConfig config;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ProcessGrid> grid;              // null for a single-process model
  std::unique_ptr<TokenDispatcher> dispatcher;    // null without expert parallelism
  // runtime.device = cuda on more than one rank: NCCL over the world (gradient sums) and over the
  // expert-parallel group (the dispatcher's exchanges of device rows); null otherwise.
  std::unique_ptr<Communicator> device_world;
  std::unique_ptr<Communicator> device_expert_parallel;
  std::unique_ptr<ExpertExecutor> experts;
  std::unique_ptr<MoeTransformer> transformer;
  std::optional<LoraSettings> adapters;  // read from --adapters DIR (this rank's share), else none
};

// Reads config.json and all weights of `directory` on this process (no expert parallelism).
std::unique_ptr<LoadedModel> load_local_model(const std::filesystem::path& directory, Device device);

// Lays the world out as a grid with `ep_size` (0: automatic) and loads this rank's slice: the
// experts `placement_file` assigns it (launch/placement_file.hpp), or by default a contiguous block.
// adapters: a PEFT LoRA directory (src/model/lora_adapters.hpp) whose adapters join the weights
// this rank holds (empty: none).
std::unique_ptr<LoadedModel> load_distributed_model(const std::filesystem::path& directory, Device device,
                                                    Communicator& world, int ep_size,
                                                    const std::filesystem::path& placement_file = {},
                                                    const std::filesystem::path& adapters = {});

// Chooses the expert placement once the grid is laid out: E experts over X expert-parallel ranks.
using PlacementChooser = std::function<ExpertPlacement(int64_t num_experts, int ep_size)>;

// The same, with the placement from `choose_placement` (temoe train's comes from the checkpoint it
// resumes, launch/resume_placement.hpp).
std::unique_ptr<LoadedModel> load_distributed_model(const std::filesystem::path& directory, Device device,
                                                    Communicator& world, int ep_size,
                                                    const PlacementChooser& choose_placement,
                                                    const std::filesystem::path& adapters = {});

// parallel.dispatch: sets the model's dispatcher to token or option mode (nothing to do without
// expert parallelism); throws naming the key and the value otherwise.
void set_dispatch_mode(LoadedModel& model, const std::string& mode);

}  // namespace temoe::launch
