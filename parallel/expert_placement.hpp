#pragma once
// Which expert-parallel rank owns each expert, and at which local index. Every rank owns E / X
// experts (equal memory per rank): contiguous blocks by default (rank j holds
// [j * E / X, (j + 1) * E / X)), or any other assignment, e.g. one computed from co-selection
// (co_selection_placement.hpp). A placement only moves experts between ranks: outputs are unchanged.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace temoe {

class ExpertPlacement {
 public:
  static ExpertPlacement contiguous(int64_t num_experts, int ep_size);
  // owners[e] = the rank holding expert e; each rank must own exactly E / X experts (local indices
  // follow ascending global id). Throws naming the rank that holds the wrong number.
  static ExpertPlacement from_owners(std::vector<int> owners, int ep_size);

  int owner(int64_t expert) const { return owner_[static_cast<size_t>(expert)]; }
  int64_t local_index(int64_t expert) const { return local_index_[static_cast<size_t>(expert)]; }
  int64_t num_experts() const { return static_cast<int64_t>(owner_.size()); }
  int ep_size() const { return ep_size_; }
  // Global ids of the experts `rank` owns, in local-index order.
  std::vector<int64_t> experts_of(int rank) const;
  const std::vector<int>& owners() const { return owner_; }
  bool is_contiguous() const;
  // The number of distinct ranks owning the experts in `experts`.
  int ranks_spanned(std::span<const int32_t> experts) const;

 private:
  std::vector<int> owner_;
  std::vector<int64_t> local_index_;
  int ep_size_ = 1;
};

}  // namespace temoe
