// CudaBackend's GEMMs through cuBLAS sgemm (fp32, plain FMA arithmetic; no TF32).
//
// cuBLAS is column-major; temoe's tensors are row-major. A row-major [R, C] matrix with leading
// dimension C is, read column-major, its transpose [C, R]. So each row-major product out = X Y is
// computed as the column-major product out^T = Y^T X^T, with the operands swapped:
//   matmul_transposed:      out[M,N] = A[M,K] B[N,K]^T  ->  out^T = op_T(B^T) A^T  (m=N, n=M, k=K)
//   matmul:                 out[M,N] = A[M,K] B[K,N]    ->  out^T = B^T A^T        (m=N, n=M, k=K)
//   matmul_transposed_left: out[N,K] = A[M,N]^T B[M,K]  ->  out^T = B^T op_T(A^T)  (m=K, n=N, k=M)
// where "B^T" etc. is simply the row-major buffer read column-major.
#include <limits>

#include "src/tensor/cuda/cuda_backend.hpp"
#include "src/tensor/cuda/cuda_check.hpp"
#include "src/tensor/gemm_shape.hpp"

namespace temoe {

namespace {
int as_blas_int(int64_t value, const char* what) {
  TEMOE_CHECK(value <= std::numeric_limits<int>::max(), "cuBLAS sgemm: " << what << " = " << value
                                                                          << " exceeds its 32-bit dimensions");
  return static_cast<int>(value);
}

void zero(Tensor& out) {
  TEMOE_CUDA_CALL(cudaMemsetAsync(out.data(), 0, static_cast<size_t>(out.numel()) * sizeof(float), nullptr));
}
}  // namespace

void CudaBackend::sgemm(cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t k,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                        bool accumulate) {
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  TEMOE_CUBLAS_CALL(cublasSgemm(cublas_, op_a, op_b, as_blas_int(m, "m"), as_blas_int(n, "n"), as_blas_int(k, "k"),
                                &alpha, a, as_blas_int(lda, "lda"), b, as_blas_int(ldb, "ldb"), &beta, c,
                                as_blas_int(ldc, "ldc")));
}

void CudaBackend::matmul_transposed(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_cuda_tensor(a, "matmul a");
  check_cuda_tensor(b, "matmul b");
  check_cuda_tensor(out, "matmul out");
  const GemmShape shape = check_gemm(GemmForm::a_times_b_transposed, a, b, out, "matmul");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) zero(out);
    return;
  }
  const int64_t m = shape.rows, n = shape.columns, k = shape.inner;
  sgemm(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, b.data(), k, a.data(), k, out.data(), n, accumulate);
}

void CudaBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_cuda_tensor(a, "matmul a");
  check_cuda_tensor(b, "matmul b");
  check_cuda_tensor(out, "matmul out");
  const GemmShape shape = check_gemm(GemmForm::a_times_b, a, b, out, "matmul");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) zero(out);
    return;
  }
  const int64_t m = shape.rows, n = shape.columns, k = shape.inner;
  sgemm(CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, b.data(), n, a.data(), k, out.data(), n, accumulate);
}

void CudaBackend::matmul_transposed_left(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_cuda_tensor(a, "matmul_transposed_left a");
  check_cuda_tensor(b, "matmul_transposed_left b");
  check_cuda_tensor(out, "matmul_transposed_left out");
  const GemmShape shape = check_gemm(GemmForm::a_transposed_times_b, a, b, out, "matmul_transposed_left");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) zero(out);
    return;
  }
  const int64_t m = shape.inner, n = shape.rows, k = shape.columns;
  sgemm(CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, b.data(), k, a.data(), n, out.data(), k, accumulate);
}

}  // namespace temoe
