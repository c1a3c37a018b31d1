// CPU kernels of the architecture variants (Qwen2-MoE, Qwen3-MoE, gpt-oss) and the attention and
// rotary loops they share with the plain kernels of cpu_backend.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/cpu_backend.hpp"
#include "src/tensor/kernel_checks.hpp"
#include "src/tensor/rotary_table.hpp"

namespace temoe {

void apply_rotary_table(Tensor& x, const RotaryTable& table) {
  const int64_t batch = x.dim(0), time = x.dim(1), heads = x.dim(2), head_dim = x.dim(3);
  const int64_t half = head_dim / 2;
  TEMOE_CHECK(table.half == half && static_cast<int64_t>(table.cos.size()) == time * half,
              "rotary: a table of " << table.cos.size() << " entries for " << time << " positions x " << half);
  const std::vector<float>& cos_table = table.cos;
  const std::vector<float>& sin_table = table.sin;
  float* data = x.data();
#pragma omp parallel for collapse(2) schedule(static) if (batch * time * heads * head_dim >= kCpuParallelWork)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < time; ++t) {
      const float* cos_row = cos_table.data() + t * half;
      const float* sin_row = sin_table.data() + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* vector = data + ((b * time + t) * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float first = vector[i], second = vector[i + half];
          vector[i] = first * cos_row[i] - second * sin_row[i];
          vector[i + half] = second * cos_row[i] + first * sin_row[i];
        }
      }
    }
  }
}

void attend_over_cache(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                       int64_t window, const Tensor* sinks, Tensor& out) {
  const AttentionShape shape = check_cached_attention(q, k_cache, v_cache, first_position, out);
  const int64_t batch = shape.batch, time = shape.time, heads = shape.heads, head_dim = shape.head_dim;
  const int64_t capacity = shape.capacity, kv_heads = shape.kv_heads;
  const int64_t group = heads / kv_heads, keys = first_position + time;
  TEMOE_CHECK(window >= 0, "attention: window " << window << " is negative");
  if (sinks) check_shape(*sinks, {heads}, "attention sinks");
  const float* sink_data = sinks ? sinks->data() : nullptr;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float* q_data = q.data();
  const float* k_data = k_cache.data();
  const float* v_data = v_cache.data();
  float* out_data = out.data();
  // Key j of sequence b is cache row (b, j); query s sits at position first_position + s.
#pragma omp parallel if (batch * heads * time * keys * head_dim >= kCpuParallelWork)
  {
    std::vector<float> scores(static_cast<size_t>(keys));
#pragma omp for collapse(3) schedule(dynamic, 16)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t s = 0; s < time; ++s) {
          const int64_t kv_head = h / group, t = first_position + s;
          const int64_t first_key = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
          const float* query = q_data + ((b * time + s) * heads + h) * head_dim;
          float maximum = sink_data ? sink_data[h] : -INFINITY;
          for (int64_t j = first_key; j <= t; ++j) {
            const float* key = k_data + ((b * capacity + j) * kv_heads + kv_head) * head_dim;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t i = 0; i < head_dim; ++i) dot += query[i] * key[i];
            scores[static_cast<size_t>(j)] = dot * scale;
            maximum = std::max(maximum, dot * scale);
          }
          float total = 0.0f;
          for (int64_t j = first_key; j <= t; ++j) {
            const float weight = std::exp(scores[static_cast<size_t>(j)] - maximum);
            scores[static_cast<size_t>(j)] = weight;
            total += weight;
          }
          // The sink takes its share of the probability and adds no value.
          if (sink_data) total += std::exp(sink_data[h] - maximum);
          float* result = out_data + ((b * time + s) * heads + h) * head_dim;
          std::fill(result, result + head_dim, 0.0f);
          for (int64_t j = first_key; j <= t; ++j) {
            const float weight = scores[static_cast<size_t>(j)] / total;
            const float* value = v_data + ((b * capacity + j) * kv_heads + kv_head) * head_dim;
#pragma omp simd
            for (int64_t i = 0; i < head_dim; ++i) result[i] += weight * value[i];
          }
        }
      }
    }
  }
}

void CpuBackend::add_bias(Tensor& x, const Tensor& bias) {
  check_rank(x, 2, "add_bias x");
  check_shape(bias, {x.dim(1)}, "add_bias bias");
  const int64_t rows = x.dim(0), width = x.dim(1);
  float* data = x.data();
  const float* b = bias.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t i = 0; i < width; ++i) data[row * width + i] += b[i];
  }
}

void CpuBackend::rotary_with_frequencies(Tensor& x, std::span<const double> inverse_frequencies, double scale,
                                         int64_t first_position) {
  check_rank(x, 4, "rotary x");
  const int64_t time = x.dim(1), head_dim = x.dim(3);
  TEMOE_CHECK(head_dim % 2 == 0 && static_cast<int64_t>(inverse_frequencies.size()) == head_dim / 2,
              "rotary: " << inverse_frequencies.size() << " inverse frequencies for head_dim " << head_dim);
  TEMOE_CHECK(first_position >= 0, "rotary: first position " << first_position << " is negative");
  apply_rotary_table(x, make_rotary_table_from(time, inverse_frequencies, scale, first_position));
}

void CpuBackend::windowed_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                                    int64_t window, const Tensor* sinks, Tensor& out) {
  attend_over_cache(q, k_cache, v_cache, first_position, window, sinks, out);
}

void CpuBackend::clamped_swiglu(const Tensor& gate, const Tensor& up, float limit, float alpha, Tensor& out) {
  check_shape(up, gate.shape(), "clamped_swiglu up");
  check_shape(out, gate.shape(), "clamped_swiglu out");
  const int64_t count = gate.numel();
  const float* g = gate.data();
  const float* u = up.data();
  float* o = out.data();
#pragma omp parallel for schedule(static) if (count >= kCpuParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const float clamped_gate = std::min(g[i], limit);
    const float clamped_up = std::clamp(u[i], -limit, limit);
    o[i] = (clamped_up + 1.0f) * clamped_gate / (1.0f + std::exp(-alpha * clamped_gate));
  }
}

void CpuBackend::add_sigmoid_gated(const Tensor& gate_logits, const Tensor& values, Tensor& out) {
  check_rank(values, 2, "add_sigmoid_gated values");
  check_shape(gate_logits, {values.dim(0), 1}, "add_sigmoid_gated gate_logits");
  check_shape(out, values.shape(), "add_sigmoid_gated out");
  const int64_t rows = values.dim(0), width = values.dim(1);
  const float* g = gate_logits.data();
  const float* v = values.data();
  float* o = out.data();
#pragma omp parallel for schedule(static) if (rows * width >= kCpuParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const float gate = 1.0f / (1.0f + std::exp(-g[row]));
    for (int64_t i = 0; i < width; ++i) o[row * width + i] += gate * v[row * width + i];
  }
}

}  // namespace temoe
