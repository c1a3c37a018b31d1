#pragma once
// The learned controllers as a mask policy. Sampling (training): d_t ~ Bernoulli(beta_t), new
// masks by Gumbel-top-k_hat when the selection is learned (selection_coefficient != 0; otherwise
// the greedy top-k_hat, the mask evaluation loads), every draw keyed by (seed, step, global
// sequence, layer, position) so that it does not depend on which rank holds the sequence. Evaluation keeps the learned
// termination probabilities (d_t ~ Bernoulli(beta_t), drawn from the evaluation seed: a threshold
// at 1/2 would turn a policy that switches 5% of the time into one that never does) and loads the
// greedy top-k_hat of the selection logits. At t = 0 the mask is the router's own top-k_hat and
// nothing is paid.
#include <vector>

#include "src/learner/mask_policy.hpp"
#include "src/learner/option_controller.hpp"
#include "src/learner/selection_locality.hpp"

namespace temoe {

// The mask each sequence of a batch holds at one layer, between chunks of positions: [B][k_hat],
// ascending expert ids.
using HeldMasks = std::vector<std::vector<int32_t>>;

class ControllerPolicy final : public MaskPolicy {
 public:
  // sample: draw selections (training); otherwise greedy selections (evaluation). locality: where
  // the experts live, for the controllers' selection_locality_bias.
  ControllerPolicy(std::vector<OptionController>& controllers, bool sample, uint64_t seed,
                   SelectionLocality locality = {});
  int64_t k_hat() const override { return controllers_.front().config().k_hat; }
  // Positions 0 .. T-1 of every sequence.
  LayerDecisions decide(const LayerView& view) override;
  // The same scan over a chunk of positions [first_position, first_position + view.time) of every
  // sequence (incremental decoding), continuing from the masks in `held` and leaving the last ones
  // there; at first_position = 0 the scan starts afresh and fills `held`. Draws are keyed by the
  // absolute position, so chunks of any size give the decisions of one whole scan.
  LayerDecisions decide_from(const LayerView& view, int64_t first_position, HeldMasks& held);

 private:
  std::vector<OptionController>& controllers_;
  bool sample_;
  uint64_t seed_;
  SelectionLocality locality_;
};

}  // namespace temoe
