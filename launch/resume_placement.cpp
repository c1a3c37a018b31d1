#include "launch/resume_placement.hpp"

#include <nlohmann/json.hpp>

#include "launch/command_line.hpp"
#include "launch/placement_file.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

StoredPlacement stored_placement(const ExpertPlacement& placement) {
  return {placement.ep_size(), std::vector<int32_t>(placement.owners().begin(), placement.owners().end())};
}

std::string placement_text(const StoredPlacement& placement) {
  return nlohmann::json{{"ep_size", placement.ep_size}, {"owners", placement.owners}}.dump();
}

PlacementChoice choose_placement(const std::filesystem::path& placement_file, const Checkpoint* checkpoint,
                                 int64_t num_experts, int ep_size) {
  PlacementChoice choice;
  choice.placement = placement_file.empty() ? ExpertPlacement::contiguous(num_experts, ep_size)
                                            : read_placement_file(placement_file, num_experts, ep_size);
  if (checkpoint == nullptr || !checkpoint->expert_placement) return choice;
  const StoredPlacement& stored = *checkpoint->expert_placement;
  const std::string where = checkpoint->source.string() + ": key /expert_placement";
  if (stored.ep_size != ep_size) {
    choice.note = "its expert placement (ep_size " + std::to_string(stored.ep_size) + ") is not applied: this run has ep_size " +
                  std::to_string(ep_size);
    return choice;
  }
  const StoredPlacement configured = stored_placement(choice.placement);
  if (stored == configured) return choice;
  if (!placement_file.empty()) {
    TEMOE_FAIL(where << " holds the expert placement " << placement_text(stored) << ", but parallel.placement = "
                     << placement_file.string() << " gives " << placement_text(configured)
                     << ": a run resumes with the placement it trained with (leave parallel.placement out to apply the "
                        "checkpoint's, or start a new run directory)");
  }
  if (static_cast<int64_t>(stored.owners.size()) != num_experts) {
    TEMOE_FAIL(where << " places " << stored.owners.size() << " experts, the model has " << num_experts);
  }
  try {
    choice.placement = ExpertPlacement::from_owners(std::vector<int>(stored.owners.begin(), stored.owners.end()), ep_size);
  } catch (const std::exception& error) {
    TEMOE_FAIL(where << ": " << error.what());
  }
  choice.from_checkpoint = true;
  choice.configured_as = resolved_value(checkpoint->config, "parallel.placement");
  choice.note = "applying its expert placement " + placement_text(stored) + " (key /expert_placement)";
  return choice;
}

}  // namespace temoe::launch
