#pragma once
// The trained controllers of a run, as an HDF5 file (controller.h5): one float32 dataset per
// parameter under /parameters, named as in the ParameterSet, plus the run's resolved configuration
// as a text attribute. Written atomically (temporary name, then rename); read back by temoe eval.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "src/tensor/parameter_set.hpp"

namespace temoe {

void save_controller(const std::filesystem::path& path, const ParameterSet& parameters, const std::string& config_text);

// Fills `parameters` (already shaped by the controllers) from the file; refuses, naming the file
// and the parameter, when a dataset is missing or has another shape.
void load_controller(const std::filesystem::path& path, ParameterSet& parameters);

// Every stored parameter by name, flattened (for comparisons in tests and tools).
std::map<std::string, std::vector<float>> read_controller_values(const std::filesystem::path& path);

}  // namespace temoe
