#pragma once
// One LoRA adapter (Hu et al. 2021) on a frozen linear map y = x W^T: y += s (x A^T) B^T with
// A [r, in], B [out, r] and s = alpha / r (or alpha / sqrt(r), rank-stabilised). It lives beside
// the weight it adapts (ModelWeights), so an expert's adapter is held by the rank that holds the
// expert. B is kept as stored (what is exported) and pre-scaled (what the forward multiplies).
#include "src/tensor/backend.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

struct LoraAdapter {
  Tensor a;         // [r, in]
  Tensor b;         // [out, r]
  Tensor scaled_b;  // [out, r] s * B
  bool defined() const { return a.defined(); }
};

// output [N, out] += s (input A^T) B^T; nothing when the adapter is not defined.
void apply_lora(Backend& backend, const LoraAdapter& adapter, const Tensor& input, Tensor& output);

}  // namespace temoe
