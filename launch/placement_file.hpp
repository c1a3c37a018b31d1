#pragma once
// Expert placements on disk: a small JSON file, {"ep_size": X, "owners": [rank of expert 0, ...]},
// named by the config key parallel.placement. Written by `temoe place`, read at load time.
#include <filesystem>

#include "parallel/expert_placement.hpp"

namespace temoe::launch {

// Throws naming the file, the key and what was expected when the file does not describe a
// placement of `num_experts` experts over `ep_size` ranks.
ExpertPlacement read_placement_file(const std::filesystem::path& path, int64_t num_experts, int ep_size);

void write_placement_file(const std::filesystem::path& path, const ExpertPlacement& placement);

}  // namespace temoe::launch
