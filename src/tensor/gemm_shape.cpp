#include "src/tensor/gemm_shape.hpp"

#include <string>

#include "src/core/error.hpp"

namespace temoe {

GemmShape check_gemm(GemmForm form, const Tensor& a, const Tensor& b, const Tensor& out, const char* what) {
  const std::string name(what);
  check_rank(a, 2, (name + " a").c_str());
  check_rank(b, 2, (name + " b").c_str());
  GemmShape shape;
  int64_t b_inner = 0;
  switch (form) {
    case GemmForm::a_times_b_transposed:
      shape = {a.dim(0), b.dim(0), a.dim(1)};
      b_inner = b.dim(1);
      break;
    case GemmForm::a_times_b:
      shape = {a.dim(0), b.dim(1), a.dim(1)};
      b_inner = b.dim(0);
      break;
    case GemmForm::a_transposed_times_b:
      shape = {a.dim(1), b.dim(1), a.dim(0)};
      b_inner = b.dim(0);
      break;
  }
  TEMOE_CHECK(b_inner == shape.inner, name << ": a " << shape_string(a.shape()) << " and b " << shape_string(b.shape())
                                           << " disagree on the inner dimension");
  check_shape(out, {shape.rows, shape.columns}, (name + " out").c_str());
  return shape;
}

}  // namespace temoe
