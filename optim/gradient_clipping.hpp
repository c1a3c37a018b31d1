#pragma once
// Clipping of all gradients of a ParameterSet to one global L2 norm, as
// torch.nn.utils.clip_grad_norm_(parameters, max_norm) with norm_type 2.
#include "src/tensor/parameter_set.hpp"

namespace temoe {

// Scales every gradient by min(1, max_norm / (norm + 1e-6)), where norm is the L2 norm of all
// gradients taken together, and returns that norm as it was before clipping. A non-finite norm is
// returned as it is and the gradients are scaled by NaN, like torch with error_if_nonfinite=false;
// the caller decides whether to skip the step (check std::isfinite on the result).
double clip_gradient_norm(ParameterSet& parameters, double max_norm);

// The global L2 norm of all gradients, without changing them.
double gradient_norm(const ParameterSet& parameters);

}  // namespace temoe
