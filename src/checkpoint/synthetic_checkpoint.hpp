#pragma once
// A checkpoint of a chosen size whose every value follows from its step, for the checkpoint
// benchmark, the kill-loop stress command and the tests: a loaded one can be verified completely
// without keeping the original.
#include <cstdint>

#include "src/checkpoint/checkpoint.hpp"

namespace temoe {

// One parameter set "controller" with AdamW moments, holding about `tensor_bytes` bytes of float32
// values and moments in all (at least one element per tensor); two ranks' states; config and
// metrics text. Value element i of parameter p is step + p + (i mod 251) / 2, exact in float32.
Checkpoint make_synthetic_checkpoint(int64_t step, int64_t tensor_bytes);

// Throws Error naming the first value that differs from what make_synthetic_checkpoint(step, ...)
// would have written, where step is the checkpoint's own step.
void verify_synthetic_checkpoint(const Checkpoint& checkpoint);

// The bytes of float32 data (values and moments) in a checkpoint's parameter sets.
int64_t checkpoint_tensor_bytes(const Checkpoint& checkpoint);

}  // namespace temoe
