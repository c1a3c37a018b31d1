#include "src/learner/selection_locality.hpp"

#include <algorithm>

#include "src/core/error.hpp"
#include "src/learner/mask_policy.hpp"
#include "src/learner/plackett_luce.hpp"

namespace temoe {

bool SelectionLocality::active(double bias) const {
  if (bias == 0) return false;
  return std::any_of(expert_owners.begin(), expert_owners.end(), [&](int owner) { return owner != home_rank; });
}

void apply_selection_locality(std::span<float> logits, int64_t experts, const SelectionLocality& locality, double bias) {
  if (!locality.active(bias)) return;
  TEMOE_CHECK(static_cast<int64_t>(locality.expert_owners.size()) == experts,
              "selection locality: " << locality.expert_owners.size() << " expert owners for " << experts << " experts");
  TEMOE_CHECK(experts > 0 && logits.size() % static_cast<size_t>(experts) == 0,
              "selection locality: " << logits.size() << " logits are not rows of " << experts << " experts");
  const auto shift = static_cast<float>(bias);
  for (size_t row = 0; row < logits.size(); row += static_cast<size_t>(experts)) {
    for (int64_t e = 0; e < experts; ++e) {
      if (locality.expert_owners[static_cast<size_t>(e)] != locality.home_rank) logits[row + static_cast<size_t>(e)] -= shift;
    }
  }
}

std::vector<int32_t> local_router_top_set(const Tensor& router_logits, int64_t row, int64_t count,
                                          const SelectionLocality& locality, double bias) {
  if (!locality.active(bias)) return router_top_set(router_logits, row, count);
  const int64_t experts = router_logits.dim(1);
  std::vector<float> logits(router_logits.data() + row * experts, router_logits.data() + (row + 1) * experts);
  apply_selection_locality(logits, experts, locality, bias);
  std::vector<int32_t> top = greedy_top(logits, count);
  std::sort(top.begin(), top.end());
  return top;
}

}  // namespace temoe
