#pragma once
// The baselines every controller result is compared with (DESIGN.md section 1):
//   FixedMaskPolicy     one mask per sequence: the router's top-k_hat at its first token;
//   RandomSwitchPolicy  switches at a given rate per layer at random positions, loading the
//                       router's own top-k_hat at that token (matched to a controller's measured
//                       rate in each layer);
//   GreedyCachePolicy   holds the top-k_hat of a moving average of router probabilities and,
//                       when a token's own top-k leaves the mask, reloads the top-k_hat of the
//                       average (which the token has just moved, but need not cover it).
//   SegmentOraclePolicy where the data carry domain labels: at every domain change (and t = 0)
//                       loads the k_hat experts the router uses most over the whole coming
//                       segment, in hindsight, and holds them to its end: switches only where the
//                       domain does, with the best single mask for each stretch.
// (Plain top-k routing, the teacher, needs no mask at all.)
#include <span>
#include <utility>
#include <vector>

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
  // rates: one per layer, or a single rate for every layer.
  RandomSwitchPolicy(int64_t k_hat, std::vector<double> rates, uint64_t seed)
      : k_hat_(k_hat), rates_(std::move(rates)), seed_(seed) {}
  int64_t k_hat() const override { return k_hat_; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  int64_t k_hat_;
  std::vector<double> rates_;
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

class SegmentOraclePolicy final : public MaskPolicy {
 public:
  SegmentOraclePolicy(int64_t k_hat, int64_t top_k) : k_hat_(k_hat), top_k_(top_k) {}
  int64_t k_hat() const override { return k_hat_; }
  // The domain label of every position of the batch about to be decided ([B * T]); the policy
  // keeps the span, which must outlive the batch's decisions.
  void set_domains(std::span<const int16_t> domains) { domains_ = domains; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  int64_t k_hat_;
  int64_t top_k_;
  std::span<const int16_t> domains_;
};

}  // namespace temoe
