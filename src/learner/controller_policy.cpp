#include "src/learner/controller_policy.hpp"

#include <algorithm>
#include <utility>

#include "src/core/error.hpp"
#include "src/learner/controller_math.hpp"

namespace temoe {

ControllerPolicy::ControllerPolicy(std::vector<OptionController>& controllers, bool sample, uint64_t seed,
                                   SelectionLocality locality)
    : controllers_(controllers), sample_(sample), seed_(seed), locality_(std::move(locality)) {}

LayerDecisions ControllerPolicy::decide(const LayerView& view) {
  HeldMasks held;
  return decide_from(view, 0, held);
}

LayerDecisions ControllerPolicy::decide_from(const LayerView& view, int64_t first_position, HeldMasks& held) {
  OptionController& controller = controllers_.at(static_cast<size_t>(view.layer));
  const int64_t batch = view.batch, time = view.time, k_hat = controller.config().k_hat;
  const double bias = controller.config().selection_locality_bias;
  const int64_t d = controller.hidden_size(), experts = controller.num_experts();
  const int64_t count = batch * time;
  TEMOE_CHECK(first_position >= 0, "controller policy: first position " << first_position << " is negative");
  LayerDecisions decisions;
  decisions.k_hat = k_hat;
  decisions.masks.resize(static_cast<size_t>(count * k_hat));
  decisions.previous_masks.resize(decisions.masks.size());
  decisions.selected_tuples.assign(decisions.masks.size(), -1);
  decisions.terminated.assign(static_cast<size_t>(count), 0);
  decisions.switched.assign(static_cast<size_t>(count), 0);
  if (count == 0) return decisions;

  const float* hidden = view.hidden->data();
  int64_t first_step = 0;  // the first chunk offset the controllers decide at
  if (first_position == 0) {
    held.assign(static_cast<size_t>(batch), {});
    for (int64_t b = 0; b < batch; ++b) {
      held[static_cast<size_t>(b)] = local_router_top_set(*view.router_logits, b * time, k_hat, locality_, bias);
      record_mask(decisions, b * time, held[static_cast<size_t>(b)], held[static_cast<size_t>(b)], true, false);
    }
    first_step = 1;
  } else {
    TEMOE_CHECK(static_cast<int64_t>(held.size()) == batch,
                "controller policy: " << held.size() << " held masks for a batch of " << batch);
    for (const auto& mask : held) {
      TEMOE_CHECK(static_cast<int64_t>(mask.size()) == k_hat,
                  "controller policy: a held mask of " << mask.size() << " experts, expected k_hat = " << k_hat);
    }
  }
  if (first_step >= time) return decisions;
  // Everything that does not depend on the masks, for all positions at once.
  TEMOE_CHECK(view.router_logits->numel() == count * experts,
              "controller policy: " << view.router_logits->numel() << " router logits for " << count << " positions x "
                                    << experts << " experts");
  HiddenProjection projection =
      controller.project(std::span<const float>(hidden, static_cast<size_t>(count * d)), count,
                         std::span<const float>(view.router_logits->data(), static_cast<size_t>(count * experts)));
  apply_selection_locality(projection.selection_logits, experts, locality_, bias);
  // A selection that is not learned is not explored either: training reloads what evaluation would.
  const bool sample_selection = sample_ && controller.config().selection_coefficient != 0;
  std::vector<int64_t> rows(static_cast<size_t>(batch));
  std::vector<int32_t> row_masks(static_cast<size_t>(batch * k_hat));
  std::vector<double> keys(static_cast<size_t>(experts));
  for (int64_t step = first_step; step < time; ++step) {
    const int64_t t = first_position + step;  // the absolute position keys the draws
    for (int64_t b = 0; b < batch; ++b) {
      rows[static_cast<size_t>(b)] = b * time + step;
      std::copy(held[static_cast<size_t>(b)].begin(), held[static_cast<size_t>(b)].end(), row_masks.begin() + b * k_hat);
    }
    const ControllerEvaluation evaluation = controller.evaluate_rows(projection, rows, row_masks);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t position = b * time + step;
      std::vector<int32_t>& mask = held[static_cast<size_t>(b)];
      const std::vector<int32_t> previous = mask;
      const bool terminate = controller_math::decide_row(
          seed_, view.step, view.sequence_ids[static_cast<size_t>(b)], view.layer, t, evaluation.beta[static_cast<size_t>(b)],
          evaluation.selection_logits.data() + b * experts, experts, k_hat, sample_selection, keys.data(),
          decisions.selected_tuples.data() + position * k_hat, mask.data());
      record_mask(decisions, position, mask, previous, false, terminate);
    }
  }
  return decisions;
}

}  // namespace temoe
