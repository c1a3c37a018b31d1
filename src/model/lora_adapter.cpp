#include "src/model/lora_adapter.hpp"

namespace temoe {

void apply_lora(Backend& backend, const LoraAdapter& adapter, const Tensor& input, Tensor& output) {
  if (!adapter.defined()) return;
  Tensor low_rank({input.dim(0), adapter.a.dim(0)}, backend.device());
  backend.matmul_transposed(input, adapter.a, low_rank, false);
  backend.matmul_transposed(low_rank, adapter.scaled_b, output, true);
}

}  // namespace temoe
