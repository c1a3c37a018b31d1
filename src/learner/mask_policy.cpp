#include "src/learner/mask_policy.hpp"

#include <algorithm>

#include "src/learner/plackett_luce.hpp"

namespace temoe {

std::vector<int32_t> router_top_set(const Tensor& router_logits, int64_t row, int64_t count) {
  const int64_t experts = router_logits.dim(1);
  auto top = greedy_top(std::span<const float>(router_logits.data() + row * experts, static_cast<size_t>(experts)), count);
  std::sort(top.begin(), top.end());
  return top;
}

void record_mask(LayerDecisions& decisions, int64_t position, std::span<const int32_t> mask,
                 std::span<const int32_t> previous, bool first_position, bool terminated) {
  const auto k = static_cast<size_t>(decisions.k_hat);
  const auto offset = static_cast<size_t>(position) * k;
  std::copy(mask.begin(), mask.end(), decisions.masks.begin() + static_cast<std::ptrdiff_t>(offset));
  const auto& before = first_position ? mask : previous;
  std::copy(before.begin(), before.end(), decisions.previous_masks.begin() + static_cast<std::ptrdiff_t>(offset));
  decisions.terminated[static_cast<size_t>(position)] = terminated && !first_position;
  decisions.switched[static_cast<size_t>(position)] = !first_position && !std::equal(mask.begin(), mask.end(), previous.begin());
}

}  // namespace temoe
