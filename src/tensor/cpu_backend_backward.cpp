// CpuBackend's backward kernels (training). The forward kernels are in cpu_backend.cpp. As there,
// every output element is produced by one thread in a fixed order, so results do not depend on the
// thread count: reductions over rows (weight gradients) run over columns in parallel, and the
// attention backward gives each (sequence, kv head) to one thread, which owns its key and value
// gradients.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/gemm_shape.hpp"
#include "src/tensor/cpu_backend.hpp"
#include "src/tensor/rotary_table.hpp"
#include "src/tensor/kernel_checks.hpp"

namespace temoe {


void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_host(a, "matmul a");
  check_host(b, "matmul b");
  check_host(out, "matmul out");
  const GemmShape shape = check_gemm(GemmForm::a_times_b, a, b, out, "matmul");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) out.fill(0.0f);
    return;
  }
  const int64_t m = shape.rows, n = shape.columns, k = shape.inner;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, a.data(), static_cast<int>(k), b.data(), static_cast<int>(n), accumulate ? 1.0f : 0.0f, out.data(),
              static_cast<int>(n));
}

void CpuBackend::matmul_transposed_left(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) {
  check_host(a, "matmul_transposed_left a");
  check_host(b, "matmul_transposed_left b");
  check_host(out, "matmul_transposed_left out");
  const GemmShape shape = check_gemm(GemmForm::a_transposed_times_b, a, b, out, "matmul_transposed_left");
  if (shape.empty()) return;
  if (shape.inner == 0) {
    if (!accumulate) out.fill(0.0f);
    return;
  }
  const int64_t m = shape.inner, n = shape.rows, k = shape.columns;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), static_cast<int>(m),
              1.0f, a.data(), static_cast<int>(n), b.data(), static_cast<int>(k), accumulate ? 1.0f : 0.0f, out.data(),
              static_cast<int>(k));
}

void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& grad_out,
                                   Tensor& grad_x, Tensor& grad_weight, bool accumulate) {
  check_rank(x, 2, "rms_norm_backward x");
  const int64_t rows = x.dim(0), width = x.dim(1);
  check_shape(weight, {width}, "rms_norm_backward weight");
  check_shape(grad_out, x.shape(), "rms_norm_backward grad_out");
  check_shape(grad_x, x.shape(), "rms_norm_backward grad_x");
  check_shape(grad_weight, {width}, "rms_norm_backward grad_weight");
  const float* input = x.data();
  const float* scale = weight.data();
  const float* upstream = grad_out.data();
  float* result = grad_x.data();
  // y_i = x_i r w_i with r = (mean(x^2) + eps)^(-1/2), so
  // dx_j = r w_j dy_j - x_j r^3 / D * sum_i dy_i w_i x_i   and   dw_i = sum_rows dy_i x_i r.
  std::vector<float> inverse(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const float* in_row = input + row * width;
    const float* up_row = upstream + row * width;
    float* out_row = result + row * width;
    // The same float sum as the forward, so that r is the forward's r bit for bit.
    float sum_squares = 0.0f;
#pragma omp simd reduction(+ : sum_squares)
    for (int64_t i = 0; i < width; ++i) sum_squares += in_row[i] * in_row[i];
    const float r = 1.0f / std::sqrt(sum_squares / static_cast<float>(width) + eps);
    inverse[static_cast<size_t>(row)] = r;
    double projection = 0.0;
    for (int64_t i = 0; i < width; ++i) projection += static_cast<double>(up_row[i]) * scale[i] * in_row[i];
    const auto coefficient = static_cast<float>(projection * r * r * r / static_cast<double>(width));
    for (int64_t i = 0; i < width; ++i) {
      const float value = r * scale[i] * up_row[i] - in_row[i] * coefficient;
      out_row[i] = accumulate ? out_row[i] + value : value;
    }
  }
  float* weight_gradient = grad_weight.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t i = 0; i < width; ++i) {
    double sum = 0.0;
    for (int64_t row = 0; row < rows; ++row) {
      sum += static_cast<double>(upstream[row * width + i]) * input[row * width + i] * inverse[static_cast<size_t>(row)];
    }
    weight_gradient[i] += static_cast<float>(sum);
  }
}

void CpuBackend::rotary_backward(Tensor& grad, double theta) {
  check_rank(grad, 4, "rotary_backward grad");
  const int64_t batch = grad.dim(0), time = grad.dim(1), heads = grad.dim(2), head_dim = grad.dim(3);
  TEMOE_CHECK(head_dim % 2 == 0, "rotary_backward: head_dim " << head_dim << " must be even");
  const RotaryTable table = make_rotary_table(time, head_dim, theta);
  const int64_t half = table.half;
  float* data = grad.data();
  // The forward maps (x1, x2) to (x1 c - x2 s, x2 c + x1 s); the gradient goes through the
  // transpose: (dy1 c + dy2 s, dy2 c - dy1 s).
#pragma omp parallel for collapse(2) schedule(static) if (batch * time * heads * head_dim >= kCpuParallelWork)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < time; ++t) {
      const float* cos_row = table.cos.data() + t * half;
      const float* sin_row = table.sin.data() + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* vector = data + ((b * time + t) * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float first = vector[i], second = vector[i + half];
          vector[i] = first * cos_row[i] + second * sin_row[i];
          vector[i + half] = second * cos_row[i] - first * sin_row[i];
        }
      }
    }
  }
}

void CpuBackend::causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                           Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const AttentionShape shape = check_attention_backward(q, k, v, grad_out, grad_q, grad_k, grad_v);
  const int64_t batch = shape.batch, time = shape.time, heads = shape.heads, head_dim = shape.head_dim;
  const int64_t kv_heads = shape.kv_heads;
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float* q_data = q.data();
  const float* k_data = k.data();
  const float* v_data = v.data();
  const float* up_data = grad_out.data();
  float* dq_data = grad_q.data();
  float* dk_data = grad_k.data();
  float* dv_data = grad_v.data();
  // With P = softmax(scale * q k^T) (causal) and out = P v:
  //   dv_j += P_tj dout_t,  dP_tj = <dout_t, v_j>,  dS_tj = P_tj (dP_tj - sum_j P_tj dP_tj),
  //   dq_t = scale sum_j dS_tj k_j,  dk_j += scale dS_tj q_t.
#pragma omp parallel if (batch * heads * time * time * head_dim >= kCpuParallelWork)
  {
    std::vector<float> probabilities(static_cast<size_t>(time)), score_grads(static_cast<size_t>(time));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t kv_head = 0; kv_head < kv_heads; ++kv_head) {
        for (int64_t t = 0; t < time; ++t) {
          float* dk_row = dk_data + ((b * time + t) * kv_heads + kv_head) * head_dim;
          float* dv_row = dv_data + ((b * time + t) * kv_heads + kv_head) * head_dim;
          std::fill(dk_row, dk_row + head_dim, 0.0f);
          std::fill(dv_row, dv_row + head_dim, 0.0f);
        }
        for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
          for (int64_t t = 0; t < time; ++t) {
            const float* query = q_data + ((b * time + t) * heads + h) * head_dim;
            const float* upstream = up_data + ((b * time + t) * heads + h) * head_dim;
            // Scores exactly as the forward computes them.
            float maximum = -INFINITY;
            for (int64_t j = 0; j <= t; ++j) {
              const float* key = k_data + ((b * time + j) * kv_heads + kv_head) * head_dim;
              float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
              for (int64_t i = 0; i < head_dim; ++i) dot += query[i] * key[i];
              probabilities[static_cast<size_t>(j)] = dot * scale;
              maximum = std::max(maximum, dot * scale);
            }
            float total = 0.0f;
            for (int64_t j = 0; j <= t; ++j) {
              const float weight = std::exp(probabilities[static_cast<size_t>(j)] - maximum);
              probabilities[static_cast<size_t>(j)] = weight;
              total += weight;
            }
            double expected = 0.0;  // sum_j P_tj dP_tj
            for (int64_t j = 0; j <= t; ++j) {
              probabilities[static_cast<size_t>(j)] /= total;
              const float* value = v_data + ((b * time + j) * kv_heads + kv_head) * head_dim;
              float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
              for (int64_t i = 0; i < head_dim; ++i) dot += upstream[i] * value[i];
              score_grads[static_cast<size_t>(j)] = dot;
              expected += static_cast<double>(probabilities[static_cast<size_t>(j)]) * dot;
            }
            float* dq_row = dq_data + ((b * time + t) * heads + h) * head_dim;
            std::fill(dq_row, dq_row + head_dim, 0.0f);
            for (int64_t j = 0; j <= t; ++j) {
              const float p = probabilities[static_cast<size_t>(j)];
              const float ds = p * (score_grads[static_cast<size_t>(j)] - static_cast<float>(expected)) * scale;
              const float* key = k_data + ((b * time + j) * kv_heads + kv_head) * head_dim;
              float* dk_row = dk_data + ((b * time + j) * kv_heads + kv_head) * head_dim;
              float* dv_row = dv_data + ((b * time + j) * kv_heads + kv_head) * head_dim;
#pragma omp simd
              for (int64_t i = 0; i < head_dim; ++i) {
                dq_row[i] += ds * key[i];
                dk_row[i] += ds * query[i];
                dv_row[i] += p * upstream[i];
              }
            }
          }
        }
      }
    }
  }
}

void CpuBackend::softmax_rows_backward(const Tensor& probabilities, const Tensor& grad_probabilities,
                                       Tensor& grad_logits) {
  check_rank(probabilities, 2, "softmax_backward probabilities");
  check_shape(grad_probabilities, probabilities.shape(), "softmax_backward grad_probabilities");
  check_shape(grad_logits, probabilities.shape(), "softmax_backward grad_logits");
  const int64_t rows = probabilities.dim(0), width = probabilities.dim(1);
  const float* p = probabilities.data();
  const float* g = grad_probabilities.data();
  float* out = grad_logits.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    double expected = 0.0;
    for (int64_t i = 0; i < width; ++i) expected += static_cast<double>(p[row * width + i]) * g[row * width + i];
    const auto mean = static_cast<float>(expected);
    for (int64_t i = 0; i < width; ++i) out[row * width + i] = p[row * width + i] * (g[row * width + i] - mean);
  }
}

void CpuBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, Tensor& grad_gate,
                                 Tensor& grad_up) {
  check_shape(up, gate.shape(), "swiglu_backward up");
  check_shape(grad_out, gate.shape(), "swiglu_backward grad_out");
  check_shape(grad_gate, gate.shape(), "swiglu_backward grad_gate");
  check_shape(grad_up, gate.shape(), "swiglu_backward grad_up");
  const int64_t count = gate.numel();
  const float* g = gate.data();
  const float* u = up.data();
  const float* d = grad_out.data();
  float* dg = grad_gate.data();
  float* du = grad_up.data();
  // silu(g) = g s(g), s the logistic; silu'(g) = s(g) (1 + g (1 - s(g))). Outputs may alias inputs
  // element by element (each element is read before it is written).
#pragma omp parallel for schedule(static) if (count >= kCpuParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const float gate_value = g[i], up_value = u[i], upstream = d[i];
    const float sigmoid = 1.0f / (1.0f + std::exp(-gate_value));
    const float silu = gate_value * sigmoid;
    du[i] = upstream * silu;
    dg[i] = upstream * up_value * sigmoid * (1.0f + gate_value * (1.0f - sigmoid));
  }
}

void CpuBackend::scatter_add_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) {
  check_rank(out, 2, "scatter_add out");
  const int64_t count = out.dim(0), width = out.dim(1);
  check_shape(source, {static_cast<int64_t>(rows.size()), width}, "scatter_add source");
  for (const int32_t row : rows) {
    TEMOE_CHECK(row >= 0 && row < count, "scatter_add: row " << row << " outside [0, " << count << ")");
  }
  const float* in = source.data();
  float* result = out.data();
  // Rows may repeat, so columns are split over threads, never rows: each element sums its
  // contributions in index order.
#pragma omp parallel for schedule(static) if (width >= 256 && static_cast<int64_t>(rows.size()) * width >= kCpuParallelWork)
  for (int64_t column = 0; column < width; ++column) {
    for (size_t i = 0; i < rows.size(); ++i) result[rows[i] * width + column] += in[static_cast<int64_t>(i) * width + column];
  }
}

void CpuBackend::combine_slots_backward(const Tensor& slots, const Tensor& weights, const Tensor& grad_out,
                                        Tensor& grad_slots, Tensor& grad_weights) {
  check_rank(weights, 2, "combine_backward weights");
  check_rank(grad_out, 2, "combine_backward grad_out");
  const int64_t tokens = weights.dim(0), slot_count = weights.dim(1), width = grad_out.dim(1);
  check_shape(slots, {tokens * slot_count, width}, "combine_backward slots");
  check_shape(grad_out, {tokens, width}, "combine_backward grad_out");
  check_shape(grad_slots, slots.shape(), "combine_backward grad_slots");
  check_shape(grad_weights, weights.shape(), "combine_backward grad_weights");
  const float* slot_data = slots.data();
  const float* weight_data = weights.data();
  const float* upstream = grad_out.data();
  float* slot_grads = grad_slots.data();
  float* weight_grads = grad_weights.data();
#pragma omp parallel for schedule(static) if (tokens * slot_count * width >= kCpuParallelWork)
  for (int64_t token = 0; token < tokens; ++token) {
    const float* up_row = upstream + token * width;
    for (int64_t s = 0; s < slot_count; ++s) {
      const int64_t slot = token * slot_count + s;
      const float weight = weight_data[slot];
      const float* slot_row = slot_data + slot * width;
      float* grad_row = slot_grads + slot * width;
      double dot = 0.0;
      for (int64_t i = 0; i < width; ++i) {
        dot += static_cast<double>(slot_row[i]) * up_row[i];
        grad_row[i] = weight * up_row[i];
      }
      weight_grads[slot] = static_cast<float>(dot);
    }
  }
}

void CpuBackend::cross_entropy(const Tensor& logits, std::span<const int32_t> targets, float grad_scale, Tensor& losses,
                               Tensor& grad_logits) {
  check_cross_entropy(logits, targets, losses, grad_logits);
  const int64_t rows = logits.dim(0), width = logits.dim(1);
  const float* in = logits.data();
  float* loss = losses.data();
  float* out = grad_logits.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const float* values = in + row * width;
    float* grads = out + row * width;
    const int32_t target = targets[static_cast<size_t>(row)];
    if (target < 0) {
      loss[row] = 0.0f;
      std::fill(grads, grads + width, 0.0f);
      continue;
    }
    const float maximum = *std::max_element(values, values + width);
    double total = 0.0;
    for (int64_t i = 0; i < width; ++i) total += std::exp(static_cast<double>(values[i] - maximum));
    const double log_total = std::log(total);
    loss[row] = static_cast<float>(log_total - static_cast<double>(values[target] - maximum));
    const double inverse = 1.0 / total;
    for (int64_t i = 0; i < width; ++i) {
      const double p = std::exp(static_cast<double>(values[i] - maximum)) * inverse;
      grads[i] = static_cast<float>(grad_scale * (p - (i == target ? 1.0 : 0.0)));
    }
  }
}

}  // namespace temoe
