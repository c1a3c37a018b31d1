#pragma once
// The experts' outputs of one MoE layer where they landed, for a combine that reads them in place
// instead of after a copy into slot order: the output of (token, slot) i is row row_of_slot[i] of
// `rows`. `rows` is usually a view of its producer's buffers, valid until the producer's next call.
#include <cstdint>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

struct SlotRows {
  Tensor rows;                       // [R, D]
  std::vector<int32_t> row_of_slot;  // [N * k]
};

}  // namespace temoe
