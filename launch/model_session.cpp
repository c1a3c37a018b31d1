#include "launch/model_session.hpp"

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

}  // namespace temoe::launch
