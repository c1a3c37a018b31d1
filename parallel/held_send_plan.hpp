#pragma once
// The send plan of option-mode dispatch for one MoE layer (DESIGN.md section 2, "the all-to-all
// made cheaper by held sets"). While a token holds a mask, its rows can only go to the ranks that
// own the mask's experts, so the rows this rank may send to rank r are bounded by the number of
// its tokens whose mask spans r. Those bounds fix the peers and the receive sizes (the receiver
// posts a receive of the bound and learns the true length when the message lands), so nothing
// about them needs negotiating until a mask switches; and after a switch, only if a bound grew
// (or the token count changed). A bound that only shrank keeps its agreed value: the receiver's
// posted receive still fits, and the sender pays at most an empty message to a peer it no longer
// needs, until the next agreement (which any growth triggers) drops it. Masks that leave their
// home rank and come back then cost one agreement, not two.
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/expert_placement.hpp"

namespace temoe {

class HeldSendPlan {
 public:
  // Held masks of `tokens` tokens (tokens * E flags, 1 = in the mask). Recomputes the bounds when
  // a mask differs from the previous call's (a switch) or the token count changed, and returns
  // whether it did; otherwise the plan is reused as it is.
  bool update(std::span<const uint8_t> held_masks, int64_t tokens, const ExpertPlacement& placement);
  // True when a bound to another rank than `self` exceeds the one last agreed with the peers, the
  // token count differs from the agreed one's, or nothing was agreed yet. (Rows a rank keeps need
  // no agreement.)
  bool needs_agreement(int self) const;
  // Records the bounds now agreed: this rank's sends and what every rank may send it, in rows.
  void agree(std::span<const int64_t> receive_bounds);

  // Rows this rank may send to each rank (its own included: rows it keeps).
  const std::vector<int64_t>& send_bounds() const { return agreed_send_bounds_; }
  const std::vector<int64_t>& receive_bounds() const { return receive_bounds_; }
  const std::vector<int64_t>& proposed_send_bounds() const { return send_bounds_; }

 private:
  std::vector<uint8_t> held_masks_;
  int64_t tokens_ = -1;
  std::vector<int64_t> send_bounds_;         // from the current masks
  std::vector<int64_t> agreed_send_bounds_;  // as last agreed
  std::vector<int64_t> receive_bounds_;
  int64_t agreed_tokens_ = -1;
  bool agreed_ = false;
};

}  // namespace temoe
