#pragma once
// A hash of the frozen model's weights, by content: a resume on a different fine-tune with the
// same tensor names and shapes (which the model fingerprint cannot tell apart) is refused. It is
// the same at every world size and expert placement: each tensor is hashed with its name (and an
// expert's with its layer and id), and the hashes are added modulo 2^64, every expert counted once
// (by the first expert-parallel group) and the dense tensors once (by world rank 0).
#include <cstdint>
#include <string>

#include "parallel/communicator.hpp"
#include "parallel/process_grid.hpp"
#include "src/model/model_weights.hpp"

namespace temoe::launch {

// Collective: every rank of `world` calls it.
uint64_t model_content_hash(const ModelWeights& weights, ProcessGrid& grid, Communicator& world);

std::string hash_text(uint64_t hash);  // 16 hex digits

}  // namespace temoe::launch
