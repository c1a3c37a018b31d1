#pragma once
// The baselines every controller result is compared with (DESIGN.md section 1):
//   FixedMaskPolicy     one mask per sequence: the router's top-k_hat at its first token;
//   RandomSwitchPolicy  switches at a given rate at random positions, loading the router's own
//                       top-k_hat at that token (matched to a controller's measured rate);
//   GreedyCachePolicy   holds the top-k_hat of a moving average of router probabilities and,
//                       when a token's own top-k leaves the mask, reloads the top-k_hat of the
//                       average (which the token has just moved, but need not cover it).
// (Plain top-k routing, the teacher, needs no mask at all.)
#include "src/learner/mask_policy.hpp"

namespace temoe {

class FixedMaskPolicy final : public MaskPolicy {
 public:
  explicit FixedMaskPolicy(int64_t k_hat) : k_hat_(k_hat) {}
  int64_t k_hat() const override { return k_hat_; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  int64_t k_hat_;
};

class RandomSwitchPolicy final : public MaskPolicy {
 public:
  RandomSwitchPolicy(int64_t k_hat, double rate, uint64_t seed) : k_hat_(k_hat), rate_(rate), seed_(seed) {}
  int64_t k_hat() const override { return k_hat_; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  int64_t k_hat_;
  double rate_;
  uint64_t seed_;
};

class GreedyCachePolicy final : public MaskPolicy {
 public:
  // `top_k`: the router's k; `decay`: weight of the past in the moving average.
  GreedyCachePolicy(int64_t k_hat, int64_t top_k, double decay) : k_hat_(k_hat), top_k_(top_k), decay_(decay) {}
  int64_t k_hat() const override { return k_hat_; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  int64_t k_hat_;
  int64_t top_k_;
  double decay_;
};

}  // namespace temoe
