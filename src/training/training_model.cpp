#include "src/training/training_model.hpp"

#include "src/core/error.hpp"
#include "src/model/expert_parallel_trainable_experts.hpp"

namespace temoe {

TrainingCommunicators training_communicators(ProcessGrid& grid) {
  return {&grid.world(), &grid.data_parallel(), &grid.expert_parallel()};
}

std::unique_ptr<TrainingModel> make_training_model(const ModelConfig& config, ModelWeights weights, Device device,
                                                   ProcessGrid* grid) {
  auto model = std::make_unique<TrainingModel>();
  model->config = config;
  model->weights = std::move(weights);
  model->gradients = make_model_gradients(model->config, model->weights);
  model->backend = make_backend(device);
  const bool expert_parallel = grid && grid->shape().ep_size > 1;
  if (expert_parallel) {
    model->dispatcher = std::make_unique<TokenDispatcher>(
        grid->expert_parallel(), ExpertPlacement::contiguous(config.num_experts, grid->shape().ep_size));
    model->experts = std::make_unique<ExpertParallelTrainableExperts>(*model->backend, model->weights, model->gradients,
                                                                      *model->dispatcher);
  } else {
    TEMOE_CHECK(model->weights.local_experts == ExpertSet(0, config.num_experts),
                "make_training_model: without expert parallelism a rank must hold all " << config.num_experts
                                                                                         << " experts");
    model->experts = std::make_unique<LocalTrainableExperts>(*model->backend, model->weights, model->gradients);
  }
  model->transformer = std::make_unique<TrainableMoeTransformer>(model->config, model->weights, model->gradients,
                                                                 *model->backend, *model->experts);
  model->parameters = make_model_parameters(model->config, model->weights, model->gradients);
  return model;
}

}  // namespace temoe
