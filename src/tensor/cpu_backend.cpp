#include "src/tensor/cpu_backend.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/gemm_shape.hpp"
#include "src/tensor/rotary_table.hpp"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {


void CpuBackend::matmul_transposed(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_host(a, "matmul a");
  check_host(b, "matmul b");
  check_host(out, "matmul out");
  const GemmShape shape = check_gemm(GemmForm::a_times_b_transposed, a, b, out, "matmul");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) out.fill(0.0f);
    return;
  }
  const int64_t m = shape.rows, n = shape.columns, k = shape.inner;
  // Note: OpenBLAS's sgemm kernels round a row's result differently depending on its position in
  // the register tile and on the thread split, so a token's output can change in the last bit with
  // the other rows in the call. Results are exactly reproducible for the same shapes and threads.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, a.data(), static_cast<int>(k), b.data(), static_cast<int>(k), accumulate ? 1.0f : 0.0f, out.data(),
              static_cast<int>(n));
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  check_rank(x, 2, "rms_norm x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  check_shape(weight, {width}, "rms_norm weight");
  check_shape(out, x.shape(), "rms_norm out");
  const float* input = x.data();
  const float* scale = weight.data();
  float* output = out.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const float* in_row = input + row * width;
    float* out_row = output + row * width;
    float sum_squares = 0.0f;
#pragma omp simd reduction(+ : sum_squares)
    for (int64_t i = 0; i < width; ++i) sum_squares += in_row[i] * in_row[i];
    const float inverse = 1.0f / std::sqrt(sum_squares / static_cast<float>(width) + eps);
#pragma omp simd
    for (int64_t i = 0; i < width; ++i) out_row[i] = in_row[i] * inverse * scale[i];
  }
}

void CpuBackend::rotary(Tensor& x, double theta) { rotary_from(x, theta, 0); }

void CpuBackend::rotary_from(Tensor& x, double theta, int64_t first_position) {
  check_rank(x, 4, "rotary x");
  const int64_t time = x.dim(1), head_dim = x.dim(3);
  TEMOE_CHECK(head_dim % 2 == 0, "rotary: head_dim " << head_dim << " must be even");
  TEMOE_CHECK(first_position >= 0, "rotary: first position " << first_position << " is negative");
  apply_rotary_table(x, make_rotary_table(time, head_dim, theta, first_position));
}

void CpuBackend::causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out) {
  check_rank(q, 4, "attention q");
  check_rank(k, 4, "attention k");
  check_shape(k, {q.dim(0), q.dim(1), k.dim(2), q.dim(3)}, "attention k");
  // The whole sequence is a cache holding exactly its own positions: one loop serves both, so a
  // decoded position is computed as in the forward by construction.
  cached_attention(q, k, v, 0, out);
}

void CpuBackend::cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                                  Tensor& out) {
  attend_over_cache(q, k_cache, v_cache, first_position, 0, nullptr, out);
}

void CpuBackend::softmax_rows(Tensor& x) {
  check_rank(x, 2, "softmax x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  float* data = x.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    float* values = data + row * width;
    const float maximum = *std::max_element(values, values + width);
    float total = 0.0f;
    for (int64_t i = 0; i < width; ++i) {
      values[i] = std::exp(values[i] - maximum);
      total += values[i];
    }
    const float inverse = 1.0f / total;
    for (int64_t i = 0; i < width; ++i) values[i] *= inverse;
  }
}

void CpuBackend::top_k_rows(const Tensor& x, int k, std::span<int32_t> indices, Tensor& values) {
  check_rank(x, 2, "top_k x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  TEMOE_CHECK(k >= 1 && k <= width, "top_k: k = " << k << " for rows of width " << width);
  TEMOE_CHECK(static_cast<int64_t>(indices.size()) == rows * k,
              "top_k: " << indices.size() << " index slots for " << rows << " rows x k = " << k);
  check_shape(values, {rows, k}, "top_k values");
  const float* data = x.data();
  float* value_data = values.data();
#pragma omp parallel if (rows * width >= kCpuParallelWork)
  {
    std::vector<int32_t> order(static_cast<size_t>(width));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const float* row_values = data + row * width;
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [row_values](int32_t a, int32_t b) {
        return row_values[a] > row_values[b] || (row_values[a] == row_values[b] && a < b);
      });
      for (int i = 0; i < k; ++i) {
        indices[static_cast<size_t>(row * k + i)] = order[static_cast<size_t>(i)];
        value_data[row * k + i] = row_values[order[static_cast<size_t>(i)]];
      }
    }
  }
}

void CpuBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  check_shape(up, gate.shape(), "swiglu up");
  check_shape(out, gate.shape(), "swiglu out");
  const int64_t count = gate.numel();
  const float* g = gate.data();
  const float* u = up.data();
  float* o = out.data();
#pragma omp parallel for schedule(static) if (count >= kCpuParallelWork)
  for (int64_t i = 0; i < count; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void CpuBackend::gather_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_rank(source, 2, "gather source");
  const int64_t count = source.dim(0), width = source.dim(1);
  check_shape(out, {static_cast<int64_t>(rows.size()), width}, "gather out");
  const float* in = source.data();
  float* result = out.data();
  for (size_t i = 0; i < rows.size(); ++i) {
    TEMOE_CHECK(rows[i] >= 0 && rows[i] < count, "gather: row " << rows[i] << " outside [0, " << count << ")");
    std::copy(in + rows[i] * width, in + (rows[i] + 1) * width, result + static_cast<int64_t>(i) * width);
  }
}

void CpuBackend::scatter_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_rank(out, 2, "scatter out");
  const int64_t count = out.dim(0), width = out.dim(1);
  check_shape(source, {static_cast<int64_t>(rows.size()), width}, "scatter source");
  const float* in = source.data();
  float* result = out.data();
  for (size_t i = 0; i < rows.size(); ++i) {
    TEMOE_CHECK(rows[i] >= 0 && rows[i] < count, "scatter: row " << rows[i] << " outside [0, " << count << ")");
    std::copy(in + static_cast<int64_t>(i) * width, in + (static_cast<int64_t>(i) + 1) * width, result + rows[i] * width);
  }
}

namespace {

// out[m] (+)= sum_s weights[m, s] * slot_row(m * S + s), s ascending.
template <typename SlotRow>
void combine_rows(int64_t tokens, int64_t slot_count, int64_t width, const float* weight_data, const SlotRow& slot_row,
                  float* result, bool accumulate) {
#pragma omp parallel for schedule(static) if (tokens * slot_count * width >= kCpuParallelWork)
  for (int64_t token = 0; token < tokens; ++token) {
    float* row = result + token * width;
    if (!accumulate) std::fill(row, row + width, 0.0f);
    for (int64_t s = 0; s < slot_count; ++s) {
      const float weight = weight_data[token * slot_count + s];
      const float* slot = slot_row(token * slot_count + s);
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) row[i] += weight * slot[i];
    }
  }
}

}  // namespace

void CpuBackend::combine_slots(const Tensor& slots, const Tensor& weights, Tensor& out, bool accumulate) {
  check_rank(weights, 2, "combine weights");
  check_rank(out, 2, "combine out");
  const int64_t tokens = weights.dim(0), slot_count = weights.dim(1), width = out.dim(1);
  check_shape(slots, {tokens * slot_count, width}, "combine slots");
  TEMOE_CHECK(out.dim(0) == tokens, "combine out has " << out.dim(0) << " rows for " << tokens << " tokens");
  const float* slot_data = slots.data();
  combine_rows(tokens, slot_count, width, weights.data(), [&](int64_t slot) { return slot_data + slot * width; }, out.data(),
               accumulate);
}

void CpuBackend::combine_slot_rows(const Tensor& rows, std::span<const int32_t> row_of_slot, const Tensor& weights,
                                   Tensor& out, bool accumulate) {
  check_rank(weights, 2, "combine weights");
  check_rank(out, 2, "combine out");
  check_rank(rows, 2, "combine rows");
  const int64_t tokens = weights.dim(0), slot_count = weights.dim(1), width = out.dim(1);
  TEMOE_CHECK(static_cast<int64_t>(row_of_slot.size()) == tokens * slot_count && rows.dim(1) == width &&
                  out.dim(0) == tokens,
              "combine rows: " << row_of_slot.size() << " slot indices, rows of width " << rows.dim(1) << ", out "
                               << out.dim(0) << " x " << width << " for " << tokens << " tokens x " << slot_count << " slots");
  const int64_t available = rows.dim(0);
  for (const int32_t row : row_of_slot) {
    TEMOE_CHECK(row >= 0 && row < available, "combine rows: slot row " << row << " outside [0, " << available << ")");
  }
  const float* row_data = rows.data();
  combine_rows(tokens, slot_count, width, weights.data(),
               [&](int64_t slot) { return row_data + static_cast<int64_t>(row_of_slot[static_cast<size_t>(slot)]) * width; },
               out.data(), accumulate);
}

void CpuBackend::add_in_place(Tensor& x, const Tensor& y) {
  check_shape(y, x.shape(), "add y");
  const int64_t count = x.numel();
  float* a = x.data();
  const float* b = y.data();
#pragma omp parallel for schedule(static) if (count >= kCpuParallelWork)
  for (int64_t i = 0; i < count; ++i) a[i] += b[i];
}


}  // namespace temoe
