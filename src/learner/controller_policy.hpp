#pragma once
// The learned controllers as a mask policy. Sampling (training): d_t ~ Bernoulli(beta_t), new
// masks by Gumbel-top-k_hat, every draw keyed by (seed, step, global sequence, layer, position) so
// that it does not depend on which rank holds the sequence. Evaluation keeps the learned
// termination probabilities (d_t ~ Bernoulli(beta_t), drawn from the evaluation seed: a threshold
// at 1/2 would turn a policy that switches 5% of the time into one that never does) and loads the
// greedy top-k_hat of the selection logits. At t = 0 the mask is the router's own top-k_hat and
// nothing is paid.
#include <vector>

#include "src/learner/mask_policy.hpp"
#include "src/learner/option_controller.hpp"

namespace temoe {

class ControllerPolicy final : public MaskPolicy {
 public:
  // sample: draw selections (training); otherwise greedy selections (evaluation).
  ControllerPolicy(std::vector<OptionController>& controllers, bool sample, uint64_t seed)
      : controllers_(controllers), sample_(sample), seed_(seed) {}
  int64_t k_hat() const override { return controllers_.front().config().k_hat; }
  LayerDecisions decide(const LayerView& view) override;

 private:
  std::vector<OptionController>& controllers_;
  bool sample_;
  uint64_t seed_;
};

}  // namespace temoe
