#pragma once
// One gradient computation of pretraining: forward with a tape over this rank's sequences, the
// loss (mean next-token cross-entropy over the global batch + load balancing + optionally routing
// locality), the backward, and
// the gradients summed over ranks. Afterwards every rank holds, for the parameters it has, the
// gradient of the global batch's loss: what one process would compute on the whole batch.
#include <cstdint>
#include <span>
#include <vector>

#include "src/training/training_model.hpp"

namespace temoe {

struct LossOptions {
  double load_balancing_coefficient = 0.01;
  double routing_locality_coefficient = 0;  // routing_locality_loss (language_model_loss.hpp); 0: off
  int64_t locality_window = 64;             // tokens per window of that term; must divide the sequence length
};

struct StepLosses {
  double cross_entropy = 0;    // mean over the global batch's tokens (nats)
  double load_balancing = 0;   // the load-balancing term as added to the loss
  double routing_locality = 0; // the routing-locality term as added to the loss (0 when off)
  double total = 0;            // cross_entropy + load_balancing + routing_locality: what the gradient is of
  int64_t global_tokens = 0;
  std::vector<double> expert_fractions;  // [L * E] f_{l,i}: share of routed slots per expert
  // [L] mean entropy of the windows' mean routing (nats), over the global batch (logged with the
  // term off too); empty when the window does not divide the sequences.
  std::vector<double> window_entropy;
};

// tokens, targets: [batch, time] this rank's sequences (batch may be 0: the rank still joins
// the collectives); global_tokens: tokens of the whole global batch (the loss's denominator).
// Zeroes the gradients first. Every rank of the world must call it with the same global_tokens.
StepLosses compute_gradients(TrainingModel& model, const TrainingCommunicators& communicators,
                             std::span<const int32_t> tokens, std::span<const int32_t> targets, int64_t batch,
                             int64_t time, int64_t global_tokens, const LossOptions& options);

}  // namespace temoe
