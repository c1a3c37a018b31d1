#pragma once
// The trained controllers of a run, as an HDF5 file (controller.h5): one dataset per parameter
// under /parameters, named as in the ParameterSet, plus the run's resolved configuration as an
// attribute. Written atomically; read back by temoe eval.
#include <filesystem>

#include "launch/command_line.hpp"
#include "src/learner/controller_trainer.hpp"

namespace temoe::launch {

void save_controller(const std::filesystem::path& path, ControllerTrainer& trainer, const po::variables_map& values);

// Fills `parameters` (already shaped by the controllers) from the file; refuses, naming the file
// and the parameter, when a dataset is missing or has another shape.
void load_controller(const std::filesystem::path& path, ParameterSet& parameters);

}  // namespace temoe::launch
