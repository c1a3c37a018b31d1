#pragma once
// Locality-aware selection: a fixed prior that lowers the selection logits of experts owned by
// ranks other than the sequence's own (controller.selection_locality_bias, in logit units), so a
// reload prefers the home rank's experts. Unlike controller.communication_cost, which reaches the
// masks only through what the selection head learns (nothing when selection_coefficient = 0), the
// bias moves every reload at once: the trainer can trade retention for traffic directly. The
// learner scores the selected tuples with the same biased logits; the shift is constant in the
// head's parameters, so the gradient formulas are unchanged.
#include <cstdint>
#include <span>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

// Where the experts live, seen from the rank whose sequences are being decided (the bias itself
// is the controllers' config).
struct SelectionLocality {
  std::vector<int> expert_owners; // owner rank of each expert in the expert-parallel group (empty: all local)
  int home_rank = 0;              // the rank that holds the sequences being decided

  // Whether `bias` changes anything here: a positive bias and at least one remote expert.
  bool active(double bias) const;
};

// Lowers by `bias` the logits of remote experts in every row of `logits` ([rows, E]).
void apply_selection_locality(std::span<float> logits, int64_t experts, const SelectionLocality& locality, double bias);

// The mask a sequence starts with at t = 0: the router's top-`count` experts at `row`, after the
// locality bias (the router's own top set when the bias is inactive), ascending ids.
std::vector<int32_t> local_router_top_set(const Tensor& router_logits, int64_t row, int64_t count,
                                          const SelectionLocality& locality, double bias);

}  // namespace temoe
