#pragma once
// Everything one rank trains: its weights (dense tensors and its experts), their gradients, the
// experts' executor (in-process, or expert-parallel through the token dispatcher), the trainable
// transformer and the parameter sets an optimizer and the gradient all-reduce work on.
#include <memory>

#include "parallel/process_grid.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/model/model_parameters.hpp"
#include "src/model/trainable_moe_transformer.hpp"

namespace temoe {

// The communicators a training step sums over; all null in a single process.
struct TrainingCommunicators {
  Communicator* world = nullptr;            // dense gradients, losses, router counts
  Communicator* data_parallel = nullptr;    // expert gradients: the ranks holding the same experts
  Communicator* expert_parallel = nullptr;  // the ranks that together hold one copy of every expert
};

TrainingCommunicators training_communicators(ProcessGrid& grid);

struct TrainingModel {
  ModelConfig config;
  ModelWeights weights;
  ModelWeights gradients;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<TokenDispatcher> dispatcher;  // null without expert parallelism
  std::unique_ptr<TrainableExperts> experts;
  std::unique_ptr<TrainableMoeTransformer> transformer;
  ModelParameters parameters;
};

// `weights` must hold the experts `grid` assigns to this rank (all experts when grid is null or
// its expert-parallel size is 1).
std::unique_ptr<TrainingModel> make_training_model(const ModelConfig& config, ModelWeights weights, Device device,
                                                   ProcessGrid* grid);

}  // namespace temoe
