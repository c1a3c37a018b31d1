#include "launch/training_setup.hpp"

#include <cmath>

#include "src/core/error.hpp"

namespace temoe::launch {

TrainerConfig trainer_config_from(const po::variables_map& values) {
  TrainerConfig config;
  ControllerConfig& controller = config.controller;
  controller.k_hat = values["controller.k_hat"].as<int64_t>();
  controller.eta = values["controller.eta"].as<double>();
  controller.hidden = values["controller.hidden"].as<int64_t>();
  controller.embedding_dim = values["controller.embedding_dim"].as<int64_t>();
  controller.set_dim = values["controller.set_dim"].as<int64_t>();
  controller.termination_bias = values["controller.termination_bias"].as<double>();
  controller.gamma = values["controller.gamma"].as<double>();
  controller.lambda = values["controller.lambda"].as<double>();
  controller.value_coefficient = values["controller.value_coefficient"].as<double>();
  controller.selection_coefficient = values["controller.selection_coefficient"].as<double>();
  controller.selection_learning_rate = values["controller.selection_learning_rate"].as<double>();
  controller.value_statistics_rate = values["controller.value_statistics_rate"].as<double>();
  if (!(controller.value_statistics_rate >= 0 && controller.value_statistics_rate <= 1)) {
    TEMOE_FAIL("controller.value_statistics_rate = " << controller.value_statistics_rate << ": expected a rate in [0, 1]");
  }
  if (!(controller.selection_learning_rate >= 0) || !std::isfinite(controller.selection_learning_rate)) {
    TEMOE_FAIL("controller.selection_learning_rate = " << controller.selection_learning_rate
                                                       << ": expected a finite non-negative learning rate");
  }
  controller.communication_cost = values["controller.communication_cost"].as<double>();
  if (controller.communication_cost < 0) {
    TEMOE_FAIL("controller.communication_cost = " << controller.communication_cost << ": expected a non-negative cost");
  }
  controller.selection_locality_bias = values["controller.selection_locality_bias"].as<double>();
  if (!(controller.selection_locality_bias >= 0)) {
    TEMOE_FAIL("controller.selection_locality_bias = " << controller.selection_locality_bias
                                                       << ": expected a non-negative bias in logits");
  }
  for (const auto& [key, value] : {std::pair<const char*, int64_t>{"controller.hidden", controller.hidden},
                                   {"controller.embedding_dim", controller.embedding_dim},
                                   {"controller.set_dim", controller.set_dim}}) {
    if (value < 1) TEMOE_FAIL(key << " = " << value << ": expected a positive size");
  }
  if (controller.eta < 0) TEMOE_FAIL("controller.eta = " << controller.eta << ": expected a non-negative cost");
  if (!(controller.gamma >= 0 && controller.gamma <= 1) || !(controller.lambda >= 0 && controller.lambda <= 1)) {
    TEMOE_FAIL("controller.gamma and controller.lambda must lie in [0, 1]");
  }
  config.optimizer.learning_rate = values["train.learning_rate"].as<double>();
  config.optimizer.weight_decay = values["train.weight_decay"].as<double>();
  config.clip_norm = values["train.clip_norm"].as<double>();
  config.reward = parse_reward_kind(values["rollout.reward"].as<std::string>());
  config.seed = values["train.seed"].as<uint64_t>();
  const std::string mode = values["rollout.mode"].as<std::string>();
  if (mode == "teacher_forced") {
    config.rollout = RolloutMode::teacher_forced;
  } else if (mode == "sampled") {
    config.rollout = RolloutMode::sampled;
  } else {
    TEMOE_FAIL("rollout.mode = '" << mode << "': expected 'teacher_forced' or 'sampled'");
  }
  config.sampled.prompt_length = values["rollout.prompt_length"].as<int64_t>();
  config.sampled.teacher_mix = values["rollout.teacher_mix"].as<double>();
  if (config.rollout == RolloutMode::sampled) {
    const int64_t time = values["train.sequence_length"].as<int64_t>();
    if (config.sampled.prompt_length < 1 || config.sampled.prompt_length > time) {
      TEMOE_FAIL("rollout.prompt_length = " << config.sampled.prompt_length << ": expected 1 .. train.sequence_length = "
                                            << time);
    }
    if (!(config.sampled.teacher_mix >= 0 && config.sampled.teacher_mix < 1)) {
      TEMOE_FAIL("rollout.teacher_mix = " << config.sampled.teacher_mix << ": expected a share in [0, 1)");
    }
  }
  return config;
}

std::string model_directory_from(const po::variables_map& values, const std::string& command) {
  if (values.count("model")) return values["model"].as<std::string>();
  if (values.count("model.dir")) return values["model.dir"].as<std::string>();
  TEMOE_FAIL("temoe " << command << ": no model given (--model DIR or model.dir in the config)");
}

data::TokenDataset read_training_data(const po::variables_map& values, bool evaluation, const std::string& command) {
  std::string path;
  if (evaluation && values.count("data.eval_path")) path = values["data.eval_path"].as<std::string>();
  else if (values.count("data.path")) path = values["data.path"].as<std::string>();
  if (path.empty()) TEMOE_FAIL("temoe " << command << ": no training data (data.path in the config or --data.path=FILE)");
  return data::read_token_dataset(path);
}

std::filesystem::path controller_file(const std::filesystem::path& run_directory) {
  return run_directory / "controller.h5";
}

ControllerConfig controller_config_of_run(const std::filesystem::path& run_directory, ControllerConfig base,
                                          const std::string& command) {
  const auto run_config = run_directory / "config.cfg";
  if (!std::filesystem::exists(run_config)) {
    TEMOE_FAIL(command << ": " << run_config.string() << " is missing: --run-dir must name a directory temoe train wrote");
  }
  const auto run_values = parse_command_line(command, {"--config", run_config.string()}, po::options_description()).values;
  base.k_hat = run_values["controller.k_hat"].as<int64_t>();
  base.hidden = run_values["controller.hidden"].as<int64_t>();
  base.embedding_dim = run_values["controller.embedding_dim"].as<int64_t>();
  base.set_dim = run_values["controller.set_dim"].as<int64_t>();
  // How the controllers choose masks, not only their shapes: a locality bias they were trained with
  // is part of the policy.
  base.selection_locality_bias = run_values["controller.selection_locality_bias"].as<double>();
  return base;
}

}  // namespace temoe::launch
