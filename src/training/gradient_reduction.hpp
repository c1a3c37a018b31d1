#pragma once
// Gradients summed over the ranks that hold the same parameters, and the global gradient norm.
// Dense parameters are replicated on every rank: summed over the world. An expert's gradient
// comes from the tokens of its expert-parallel group (the reverse exchange brought them to the
// owner), so it is summed over the data-parallel group, the ranks holding the same experts.
// Communicator::all_reduce_sum adds in rank order, so every rank gets bit-identical sums.
#include "src/model/model_parameters.hpp"
#include "src/training/training_model.hpp"

namespace temoe {

void all_reduce_gradients(ModelParameters& parameters, const TrainingCommunicators& communicators);

// The L2 norm of the whole model's gradient, each expert counted once (its expert-parallel
// group holds one copy of every expert). The same on every rank; call after all_reduce_gradients.
double global_gradient_norm(const ModelParameters& parameters, const TrainingCommunicators& communicators);

// Scales every gradient by min(1, max_norm / (norm + 1e-6)) with the global norm, as
// torch.nn.utils.clip_grad_norm_ does for one process; returns the norm before clipping. A
// non-finite norm leaves the gradients unchanged (the caller skips the step).
double clip_global_gradient_norm(ModelParameters& parameters, const TrainingCommunicators& communicators,
                                 double max_norm);

}  // namespace temoe
