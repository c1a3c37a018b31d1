#include "parallel/held_send_plan.hpp"

#include <algorithm>

#include "src/core/error.hpp"

namespace temoe {

bool HeldSendPlan::update(std::span<const uint8_t> held_masks, int64_t tokens, const ExpertPlacement& placement) {
  const int64_t experts = placement.num_experts();
  TEMOE_CHECK(static_cast<int64_t>(held_masks.size()) == tokens * experts,
              "held send plan: " << held_masks.size() << " mask flags for " << tokens << " tokens x " << experts << " experts");
  if (tokens == tokens_ && std::equal(held_masks.begin(), held_masks.end(), held_masks_.begin(), held_masks_.end())) {
    return false;
  }
  held_masks_.assign(held_masks.begin(), held_masks.end());
  tokens_ = tokens;
  const auto ranks = static_cast<size_t>(placement.ep_size());
  send_bounds_.assign(ranks, 0);
  std::vector<uint8_t> spans(ranks);
  for (int64_t token = 0; token < tokens; ++token) {
    std::fill(spans.begin(), spans.end(), uint8_t{0});
    const uint8_t* mask = held_masks.data() + token * experts;
    for (int64_t e = 0; e < experts; ++e) {
      if (mask[e]) spans[static_cast<size_t>(placement.owner(e))] = 1;
    }
    for (size_t r = 0; r < ranks; ++r) send_bounds_[r] += spans[r];
  }
  return true;
}

bool HeldSendPlan::needs_agreement(int self) const {
  if (!agreed_ || tokens_ != agreed_tokens_) return true;
  for (size_t r = 0; r < send_bounds_.size(); ++r) {
    if (static_cast<int>(r) != self && send_bounds_[r] > agreed_send_bounds_[r]) return true;
  }
  return false;
}

void HeldSendPlan::agree(std::span<const int64_t> receive_bounds) {
  TEMOE_CHECK(receive_bounds.size() == send_bounds_.size(),
              "held send plan: " << receive_bounds.size() << " receive bounds for " << send_bounds_.size() << " ranks");
  agreed_send_bounds_ = send_bounds_;
  agreed_tokens_ = tokens_;
  receive_bounds_.assign(receive_bounds.begin(), receive_bounds.end());
  agreed_ = true;
}

}  // namespace temoe
