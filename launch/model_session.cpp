#include "launch/model_session.hpp"

#include "src/model/expert_parallel_experts.hpp"

namespace temoe::launch {

std::unique_ptr<LoadedModel> load_local_model(const std::filesystem::path& directory, Device device) {
  auto model = std::make_unique<LoadedModel>();
  model->config = ModelConfig::from_file(directory / "config.json");
  model->checkpoint = std::make_unique<SafetensorsCheckpoint>(directory);
  model->weights = load_model_weights(*model->checkpoint, model->config, {0, model->config.num_experts});
  model->backend = make_backend(device);
  model->experts = std::make_unique<LocalExperts>(*model->backend, model->weights);
  model->transformer = std::make_unique<MoeTransformer>(model->config, model->weights, *model->backend, *model->experts);
  return model;
}

std::unique_ptr<LoadedModel> load_distributed_model(const std::filesystem::path& directory, Device device,
                                                    Communicator& world, int ep_size) {
  auto model = std::make_unique<LoadedModel>();
  model->config = ModelConfig::from_file(directory / "config.json");
  model->grid = std::make_unique<ProcessGrid>(world, ep_size, model->config.num_experts);
  const int64_t per_rank = model->grid->experts_per_rank();
  model->checkpoint = std::make_unique<SafetensorsCheckpoint>(directory);
  model->weights = load_model_weights(*model->checkpoint, model->config, {model->grid->ep_rank() * per_rank, per_rank});
  model->backend = make_backend(device);
  if (model->grid->shape().ep_size == 1) {
    model->experts = std::make_unique<LocalExperts>(*model->backend, model->weights);
  } else {
    model->dispatcher = std::make_unique<TokenDispatcher>(
        model->grid->expert_parallel(), ExpertPlacement::contiguous(model->config.num_experts, model->grid->shape().ep_size));
    model->experts = std::make_unique<ExpertParallelExperts>(*model->backend, model->weights, *model->dispatcher);
  }
  model->transformer = std::make_unique<MoeTransformer>(model->config, model->weights, *model->backend, *model->experts);
  return model;
}

}  // namespace temoe::launch
