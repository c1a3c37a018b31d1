#include "parallel/expert_placement.hpp"

#include "src/core/error.hpp"

namespace temoe {

ExpertPlacement ExpertPlacement::contiguous(int64_t num_experts, int ep_size) {
  TEMOE_CHECK(ep_size >= 1 && num_experts % ep_size == 0,
              "ep_size " << ep_size << " does not divide " << num_experts << " experts");
  ExpertPlacement placement;
  placement.ep_size_ = ep_size;
  const int64_t per_rank = num_experts / ep_size;
  for (int64_t expert = 0; expert < num_experts; ++expert) {
    placement.owner_.push_back(static_cast<int>(expert / per_rank));
    placement.local_index_.push_back(expert % per_rank);
  }
  return placement;
}

std::vector<int64_t> ExpertPlacement::experts_of(int rank) const {
  std::vector<int64_t> experts;
  for (int64_t expert = 0; expert < num_experts(); ++expert) {
    if (owner(expert) == rank) experts.push_back(expert);
  }
  return experts;
}

}  // namespace temoe
