#pragma once
// The three matrix products every backend computes (out (+)= ...), with their shape checks in one
// place: backends differ only in the GEMM call.
#include <cstdint>

#include "src/tensor/tensor.hpp"

namespace temoe {

enum class GemmForm {
  a_times_b_transposed,  // a [rows, inner], b [columns, inner]
  a_times_b,             // a [rows, inner], b [inner, columns]
  a_transposed_times_b,  // a [inner, rows], b [inner, columns]
};

// out is [rows, columns], each entry a sum over `inner` products.
struct GemmShape {
  int64_t rows = 0;
  int64_t columns = 0;
  int64_t inner = 0;
  bool empty() const { return rows == 0 || columns == 0; }
};

// Checks that a, b and out are matrices of the form's shapes, naming `what` and the shapes when not.
GemmShape check_gemm(GemmForm form, const Tensor& a, const Tensor& b, const Tensor& out, const char* what);

}  // namespace temoe
