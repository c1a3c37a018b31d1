#pragma once
// Which expert-parallel rank owns each expert, and at which local index. Contiguous blocks now
// (rank j holds [j * E / X, (j + 1) * E / X)); a permuted placement slots in here later.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace temoe {

class ExpertPlacement {
 public:
  static ExpertPlacement contiguous(int64_t num_experts, int ep_size);

  int owner(int64_t expert) const { return owner_[static_cast<size_t>(expert)]; }
  int64_t local_index(int64_t expert) const { return local_index_[static_cast<size_t>(expert)]; }
  int64_t num_experts() const { return static_cast<int64_t>(owner_.size()); }
  int ep_size() const { return ep_size_; }
  // Global ids of the experts `rank` owns, in local-index order.
  std::vector<int64_t> experts_of(int rank) const;

 private:
  std::vector<int> owner_;
  std::vector<int64_t> local_index_;
  int ep_size_ = 1;
};

}  // namespace temoe
