#include "parallel/expert_placement.hpp"

#include <algorithm>
#include <bit>

#include "src/core/error.hpp"

namespace temoe {

ExpertPlacement ExpertPlacement::contiguous(int64_t num_experts, int ep_size) {
  TEMOE_CHECK(ep_size >= 1 && num_experts % ep_size == 0,
              "ep_size " << ep_size << " does not divide " << num_experts << " experts");
  std::vector<int> owners;
  const int64_t per_rank = num_experts / ep_size;
  for (int64_t expert = 0; expert < num_experts; ++expert) owners.push_back(static_cast<int>(expert / per_rank));
  return from_owners(std::move(owners), ep_size);
}

ExpertPlacement ExpertPlacement::from_owners(std::vector<int> owners, int ep_size) {
  const auto num_experts = static_cast<int64_t>(owners.size());
  TEMOE_CHECK(ep_size >= 1 && num_experts % ep_size == 0,
              "ep_size " << ep_size << " does not divide " << num_experts << " experts");
  std::vector<int64_t> held(static_cast<size_t>(ep_size), 0);
  ExpertPlacement placement;
  placement.ep_size_ = ep_size;
  for (int64_t expert = 0; expert < num_experts; ++expert) {
    const int owner = owners[static_cast<size_t>(expert)];
    TEMOE_CHECK(owner >= 0 && owner < ep_size,
                "expert " << expert << " placed on rank " << owner << ", outside the " << ep_size << " expert-parallel ranks");
    placement.local_index_.push_back(held[static_cast<size_t>(owner)]++);
  }
  for (int rank = 0; rank < ep_size; ++rank) {
    TEMOE_CHECK(held[static_cast<size_t>(rank)] == num_experts / ep_size,
                "placement gives rank " << rank << " " << held[static_cast<size_t>(rank)] << " experts; every rank must hold "
                                        << num_experts / ep_size << " (E / ep_size)");
  }
  placement.owner_ = std::move(owners);
  return placement;
}

std::vector<int64_t> ExpertPlacement::experts_of(int rank) const {
  std::vector<int64_t> experts;
  for (int64_t expert = 0; expert < num_experts(); ++expert) {
    if (owner(expert) == rank) experts.push_back(expert);
  }
  return experts;
}

bool ExpertPlacement::is_contiguous() const {
  const int64_t per_rank = num_experts() / ep_size_;
  for (int64_t expert = 0; expert < num_experts(); ++expert) {
    if (owner(expert) != expert / per_rank) return false;
  }
  return true;
}

int ExpertPlacement::ranks_spanned(std::span<const int32_t> experts) const {
  uint64_t small_set = 0;  // ep_size <= 64 in practice; larger groups fall back to a sorted list
  if (ep_size_ <= 64) {
    for (const int32_t expert : experts) small_set |= uint64_t{1} << owner(expert);
    return std::popcount(small_set);
  }
  std::vector<int> ranks;
  for (const int32_t expert : experts) ranks.push_back(owner(expert));
  std::sort(ranks.begin(), ranks.end());
  return static_cast<int>(std::unique(ranks.begin(), ranks.end()) - ranks.begin());
}

}  // namespace temoe
