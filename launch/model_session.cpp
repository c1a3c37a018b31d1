#include "launch/model_session.hpp"

#include "launch/device_session.hpp"
#include "launch/placement_file.hpp"
#include "src/core/error.hpp"
#include "src/model/expert_parallel_experts.hpp"

namespace temoe::launch {

std::unique_ptr<LoadedModel> load_local_model(const std::filesystem::path& directory, Device device) {
  select_rank_device(device);
  auto model = std::make_unique<LoadedModel>();
  model->config = ModelConfig::from_file(directory / "config.json");
  model->checkpoint = std::make_unique<SafetensorsCheckpoint>(directory);
  model->weights = load_model_weights(*model->checkpoint, model->config, {0, model->config.num_experts});
  if (device != Device::cpu) model->weights = weights_on_device(model->weights, device);
  model->backend = make_backend(device);
  model->experts = std::make_unique<LocalExperts>(*model->backend, model->weights);
  model->transformer = std::make_unique<MoeTransformer>(model->config, model->weights, *model->backend, *model->experts);
  return model;
}

std::unique_ptr<LoadedModel> load_distributed_model(const std::filesystem::path& directory, Device device,
                                                    Communicator& world, int ep_size,
                                                    const std::filesystem::path& placement_file,
                                                    const std::filesystem::path& adapters) {
  return load_distributed_model(
      directory, device, world, ep_size,
      [&](int64_t num_experts, int ranks) {
        return placement_file.empty() ? ExpertPlacement::contiguous(num_experts, ranks)
                                      : read_placement_file(placement_file, num_experts, ranks);
      },
      adapters);
}

std::unique_ptr<LoadedModel> load_distributed_model(const std::filesystem::path& directory, Device device,
                                                    Communicator& world, int ep_size,
                                                    const PlacementChooser& choose_placement,
                                                    const std::filesystem::path& adapters) {
  select_rank_device(device);  // before the first allocation on it
  auto model = std::make_unique<LoadedModel>();
  model->config = ModelConfig::from_file(directory / "config.json");
  model->grid = std::make_unique<ProcessGrid>(world, ep_size, model->config.num_experts);
  auto placement = choose_placement(model->config.num_experts, model->grid->shape().ep_size);
  model->checkpoint = std::make_unique<SafetensorsCheckpoint>(directory);
  model->weights = load_model_weights(*model->checkpoint, model->config,
                                      ExpertSet::of(placement.experts_of(model->grid->ep_rank())));
  if (!adapters.empty()) model->adapters = load_lora_adapters(adapters, model->config, model->weights);
  if (device != Device::cpu) model->weights = weights_on_device(model->weights, device);
  model->backend = make_backend(device);
  if (model->grid->shape().ep_size == 1) {
    model->experts = std::make_unique<LocalExperts>(*model->backend, model->weights);
  } else {
    model->dispatcher = std::make_unique<TokenDispatcher>(model->grid->expert_parallel(), std::move(placement));
    if (device != Device::cpu) {
      model->device_expert_parallel = make_device_communicator(model->grid->expert_parallel(), device);
      model->dispatcher->use_device_transport(*model->device_expert_parallel, *model->backend);
    }
    model->experts = std::make_unique<ExpertParallelExperts>(*model->backend, model->weights, *model->dispatcher);
  }
  if (device != Device::cpu && world.size() > 1) model->device_world = make_device_communicator(world, device);
  model->transformer = std::make_unique<MoeTransformer>(model->config, model->weights, *model->backend, *model->experts);
  return model;
}

void set_dispatch_mode(LoadedModel& model, const std::string& mode) {
  if (mode != "token" && mode != "option") {
    TEMOE_FAIL("parallel.dispatch = " << mode << ": expected token or option");
  }
  if (model.dispatcher) model.dispatcher->set_mode(mode == "option" ? DispatchMode::option : DispatchMode::token);
}

}  // namespace temoe::launch
