#pragma once
// Expert placement from co-selection (the idea of ExFlow and MoETuner): experts that are selected
// together go to the same rank, so that a token's experts, or a held mask, span few ranks, while
// the work each rank receives stays balanced. Measured on calibration selections (the router's
// top-k per token, or the controllers' held masks), then applied as a permutation at load time.
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/expert_placement.hpp"

namespace temoe {

// Selections observed on calibration data: `sets` holds one set of `set_size` expert ids after
// another (for example each token's top-k, or each (token, layer)'s held mask).
struct SelectionSamples {
  int64_t num_experts = 0;
  int64_t set_size = 0;
  std::vector<int32_t> sets;

  int64_t count() const { return set_size == 0 ? 0 : static_cast<int64_t>(sets.size()) / set_size; }
  std::span<const int32_t> set(int64_t i) const {
    return std::span<const int32_t>(sets).subspan(static_cast<size_t>(i * set_size), static_cast<size_t>(set_size));
  }
};

struct PlacementQuality {
  double mean_ranks_spanned = 0;  // over the sets: distinct ranks owning a set's experts
  double max_load_over_mean = 0;  // the busiest rank's share of expert uses, over the mean share
};

PlacementQuality evaluate_placement(const ExpertPlacement& placement, const SelectionSamples& samples);

struct PlacementSearchOptions {
  // A rank may receive at most (1 + load_tolerance) times the mean load, unless the starting
  // placement was already worse (then a move may not make it worse still).
  double load_tolerance = 0.10;
  int restarts = 4;  // the contiguous placement plus restarts - 1 seeded random ones
  uint64_t seed = 1;
};

// Local search over swaps of two experts between ranks, from several starting placements; returns
// the placement with the fewest ranks spanned per set that meets the load bound. Deterministic.
ExpertPlacement co_selection_placement(const SelectionSamples& samples, int ep_size,
                                       const PlacementSearchOptions& options = {});

}  // namespace temoe
