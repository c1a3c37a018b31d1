#pragma once
// The expert placement of a run that may resume from a checkpoint. A placement is a permutation of
// experts over the expert-parallel ranks, applied at load time (outputs are unchanged); the one a
// run trains with is saved with every checkpoint (Checkpoint::expert_placement). On resume it is
// applied again, as if its file were passed as parallel.placement, so that a run resumed without
// the file continues exactly. An explicit parallel.placement that differs from it is refused; a
// resume at another expert-parallel size keeps the configured placement (the stored one does not
// fit it).
#include <cstdint>
#include <filesystem>
#include <string>

#include "parallel/expert_placement.hpp"
#include "src/checkpoint/checkpoint.hpp"

namespace temoe::launch {

StoredPlacement stored_placement(const ExpertPlacement& placement);

// {"ep_size":X,"owners":[...]}: the placement file's form (launch/placement_file.hpp), for messages.
std::string placement_text(const StoredPlacement& placement);

struct PlacementChoice {
  ExpertPlacement placement;
  // The checkpoint's placement was applied for want of parallel.placement; `configured_as` is then
  // the parallel.placement of the run that wrote the checkpoint (the resolved configuration records
  // it, so that the resumed run's configuration equals an uninterrupted run's).
  bool from_checkpoint = false;
  std::string configured_as;
  std::string note;  // for rank 0's resume line; empty when there is nothing to say
};

// E experts over X expert-parallel ranks, for a run configured with `placement_file`
// (parallel.placement; empty: contiguous blocks) that resumes from `checkpoint` (nullptr: a fresh
// run). Throws naming the checkpoint file, the key /expert_placement and both placements when an
// explicit placement file differs from the stored placement of the same ep_size.
PlacementChoice choose_placement(const std::filesystem::path& placement_file, const Checkpoint* checkpoint,
                                 int64_t num_experts, int ep_size);

}  // namespace temoe::launch
