#pragma once
// One gradient computation of pretraining: forward with a tape over this rank's sequences, the
// loss (mean next-token cross-entropy over the global batch + load balancing), the backward, and
// the gradients summed over ranks. Afterwards every rank holds, for the parameters it has, the
// gradient of the global batch's loss: what one process would compute on the whole batch.
#include <cstdint>
#include <span>
#include <vector>

#include "src/training/training_model.hpp"

namespace temoe {

struct LossOptions {
  double load_balancing_coefficient = 0.01;
};

struct StepLosses {
  double cross_entropy = 0;    // mean over the global batch's tokens (nats)
  double load_balancing = 0;   // the load-balancing term as added to the loss
  double total = 0;            // cross_entropy + load_balancing: what the gradient is of
  int64_t global_tokens = 0;
  std::vector<double> expert_fractions;  // [L * E] f_{l,i}: share of routed slots per expert
};

// tokens, targets: [batch, time] this rank's sequences (batch may be 0: the rank still joins
// the collectives); global_tokens: tokens of the whole global batch (the loss's denominator).
// Zeroes the gradients first. Every rank of the world must call it with the same global_tokens.
StepLosses compute_gradients(TrainingModel& model, const TrainingCommunicators& communicators,
                             std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t batch,
                             int64_t time, int64_t global_tokens, const LossOptions& options);

}  // namespace temoe
