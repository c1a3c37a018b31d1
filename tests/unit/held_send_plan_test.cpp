// The option-mode send plan of one layer: bounds from held masks, rebuilt on a switch, agreement
// needed only when a bound to another rank grows or the token count changes; a bound that only
// shrank keeps its agreed value until the next agreement.
#include <gtest/gtest.h>

#include "parallel/held_send_plan.hpp"

namespace temoe {
namespace {

// 8 experts on 4 ranks (two each); masks of `tokens` tokens, each given as its experts.
std::vector<uint8_t> masks_of(const std::vector<std::vector<int>>& experts_per_token) {
  std::vector<uint8_t> flags(experts_per_token.size() * 8, 0);
  for (size_t token = 0; token < experts_per_token.size(); ++token) {
    for (const int expert : experts_per_token[token]) flags[token * 8 + static_cast<size_t>(expert)] = 1;
  }
  return flags;
}

TEST(HeldSendPlan, AgreesOnlyWhenABoundToAnotherRankGrows) {
  const ExpertPlacement placement = ExpertPlacement::contiguous(8, 4);
  constexpr int kSelf = 0;
  HeldSendPlan plan;
  // Token 0 spans ranks 0 and 1, token 1 ranks 0 and 2.
  EXPECT_TRUE(plan.update(masks_of({{0, 2}, {1, 4}}), 2, placement));
  EXPECT_TRUE(plan.needs_agreement(kSelf)) << "nothing agreed yet";
  plan.agree(std::vector<int64_t>{2, 0, 0, 0});
  EXPECT_EQ(plan.send_bounds(), (std::vector<int64_t>{2, 1, 1, 0}));
  EXPECT_FALSE(plan.update(masks_of({{0, 2}, {1, 4}}), 2, placement)) << "held: nothing rebuilt";
  EXPECT_FALSE(plan.needs_agreement(kSelf));

  // Token 1 comes home: its bound to rank 2 drops. The agreed plan stands (rank 2 still expects
  // a message, now empty), so nothing is negotiated.
  EXPECT_TRUE(plan.update(masks_of({{0, 2}, {0, 1}}), 2, placement));
  EXPECT_EQ(plan.proposed_send_bounds(), (std::vector<int64_t>{2, 1, 0, 0}));
  EXPECT_FALSE(plan.needs_agreement(kSelf));
  EXPECT_EQ(plan.send_bounds(), (std::vector<int64_t>{2, 1, 1, 0}));

  // Rows kept at home need no agreement, whatever their count.
  EXPECT_TRUE(plan.update(masks_of({{0, 1}, {0, 1}}), 2, placement));
  EXPECT_FALSE(plan.needs_agreement(kSelf));

  // Token 0 moves to rank 3: a bound above the agreed one. The agreement takes the current
  // bounds, so the stale peer (rank 2) is dropped with it.
  EXPECT_TRUE(plan.update(masks_of({{6, 7}, {0, 1}}), 2, placement));
  EXPECT_TRUE(plan.needs_agreement(kSelf));
  plan.agree(std::vector<int64_t>{1, 0, 0, 0});
  EXPECT_EQ(plan.send_bounds(), (std::vector<int64_t>{1, 0, 0, 1}));
  EXPECT_EQ(plan.receive_bounds(), (std::vector<int64_t>{1, 0, 0, 0}));

  // A different token count always renegotiates, even with smaller bounds.
  EXPECT_TRUE(plan.update(masks_of({{0, 1}}), 1, placement));
  EXPECT_TRUE(plan.needs_agreement(kSelf));
}

}  // namespace
}  // namespace temoe
