#pragma once
// What temoe train and temoe eval share: the trainer's settings from the configuration keys, the
// token data, and the run directory's files.
#include <filesystem>
#include <string>

#include "launch/command_line.hpp"
#include "src/data/token_dataset.hpp"
#include "src/learner/controller_trainer.hpp"

namespace temoe::launch {

TrainerConfig trainer_config_from(const po::variables_map& values);

// model.dir, from --model or the config; fails naming the key when absent.
std::string model_directory_from(const po::variables_map& values, const std::string& command);

// Reads data.path (or, for evaluation, data.eval_path falling back to data.path).
data::TokenDataset read_training_data(const po::variables_map& values, bool evaluation, const std::string& command);

// The controller parameters written at the end of training (and read by eval).
std::filesystem::path controller_file(const std::filesystem::path& run_directory);

// `base` with the controllers' shapes (k_hat and the layer sizes) of a finished run, read from its
// resolved configuration, so that its controller.h5 loads whatever the current config says.
ControllerConfig controller_config_of_run(const std::filesystem::path& run_directory, ControllerConfig base,
                                          const std::string& command);

}  // namespace temoe::launch
