// Every CPU kernel against a plain double-precision loop written here, on sizes that are not
// multiples of any vector width or block size. Where a result must be exact (position 0 of the
// rotary, data movement, causality, tie-breaking), the test asks for bitwise equality.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/tensor/cpu_backend.hpp"

namespace temoe {
namespace {

// Values uniform in [-scale, scale), reproducible from the seed.
Tensor random_tensor(Shape shape, uint64_t seed, double scale = 1.0) {
  Tensor tensor(std::move(shape));
  CounterRandom random(seed, {});
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(scale * (2.0 * random.uniform() - 1.0));
  return tensor;
}

// max |got - expected| <= absolute + relative * |expected|, element-wise; reports the worst element.
void expect_close(const Tensor& got, const std::vector<double>& expected, double absolute, double relative,
                  const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(expected.size())) << what;
  int64_t worst = -1;
  double worst_excess = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double error = std::fabs(double(got.data()[i]) - expected[static_cast<size_t>(i)]);
    const double allowed = absolute + relative * std::fabs(expected[static_cast<size_t>(i)]);
    if (!(error <= allowed) && (worst < 0 || error - allowed > worst_excess)) {
      worst = i;
      worst_excess = error - allowed;
    }
  }
  EXPECT_LT(worst, 0) << what << ": element " << worst << " is " << got.data()[std::max<int64_t>(worst, 0)]
                      << ", expected " << expected[static_cast<size_t>(std::max<int64_t>(worst, 0))];
}

bool bitwise_equal(const float* a, const float* b, int64_t count) {
  return std::memcmp(a, b, static_cast<size_t>(count) * sizeof(float)) == 0;
}

// ---------------------------------------------------------------------------------------------
// matmul_transposed: out[m, n] (+)= sum_k a[m, k] * b[n, k]

std::vector<double> reference_matmul(const Tensor& a, const Tensor& b, const Tensor* initial) {
  const int64_t m = a.dim(0), k = a.dim(1), n = b.dim(0);
  std::vector<double> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = initial ? initial->data()[i * n + j] : 0.0;
      for (int64_t p = 0; p < k; ++p) sum += double(a.data()[i * k + p]) * b.data()[j * k + p];
      out[static_cast<size_t>(i * n + j)] = sum;
    }
  }
  return out;
}

TEST(CpuKernels, MatmulTransposedMatchesDoubleLoop) {
  CpuBackend backend;
  // Row counts below, at and past a multiple of 64, so any row blocking is covered.
  for (const int64_t m : {1, 5, 64, 130}) {
    const int64_t k = 37, n = 23;
    const Tensor a = random_tensor({m, k}, 1 + m), b = random_tensor({n, k}, 2 + m);
    Tensor out({m, n});
    out.fill(NAN);  // must be overwritten, not accumulated into
    backend.matmul_transposed(a, b, out, false);
    expect_close(out, reference_matmul(a, b, nullptr), 1e-5, 1e-5, "matmul M=" + std::to_string(m));
  }
}

TEST(CpuKernels, MatmulTransposedAccumulates) {
  CpuBackend backend;
  for (const int64_t m : {3, 70}) {
    const int64_t k = 19, n = 11;
    const Tensor a = random_tensor({m, k}, 3), b = random_tensor({n, k}, 4);
    Tensor out = random_tensor({m, n}, 5, 10.0);
    const Tensor initial = out.clone();
    backend.matmul_transposed(a, b, out, true);
    expect_close(out, reference_matmul(a, b, &initial), 1e-5, 1e-5, "accumulate M=" + std::to_string(m));
  }
}

TEST(CpuKernels, MatmulTransposedEmptyShapes) {
  CpuBackend backend;
  // M = 0: an expert that received no tokens.
  const Tensor a = Tensor::zeros({0, 8}), b = random_tensor({4, 8}, 6);
  Tensor out({0, 4});
  backend.matmul_transposed(a, b, out, false);
  backend.matmul_transposed(a, b, out, true);
  EXPECT_EQ(out.shape(), (Shape{0, 4}));
  // K = 0: an empty sum is zero, or leaves out unchanged when accumulating.
  const Tensor a0 = Tensor::zeros({3, 0}), b0 = Tensor::zeros({4, 0});
  Tensor out0 = random_tensor({3, 4}, 7);
  const Tensor before = out0.clone();
  backend.matmul_transposed(a0, b0, out0, true);
  EXPECT_TRUE(bitwise_equal(out0.data(), before.data(), out0.numel()));
  backend.matmul_transposed(a0, b0, out0, false);
  for (int64_t i = 0; i < out0.numel(); ++i) EXPECT_EQ(out0.data()[i], 0.0f);
}

TEST(CpuKernels, MatmulTransposedRejectsMismatchedShapes) {
  CpuBackend backend;
  const Tensor a = Tensor::zeros({2, 5}), b = Tensor::zeros({3, 4});
  Tensor out({2, 3});
  EXPECT_THROW(backend.matmul_transposed(a, b, out, false), Error);
}

// ---------------------------------------------------------------------------------------------
// rms_norm: out = x / sqrt(mean(x^2) + eps) * weight

std::vector<double> reference_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const int64_t rows = x.dim(0), width = x.dim(1);
  std::vector<double> out(static_cast<size_t>(x.numel()));
  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0;
    for (int64_t i = 0; i < width; ++i) squares += double(x.data()[r * width + i]) * x.data()[r * width + i];
    const double inverse = 1.0 / std::sqrt(squares / double(width) + eps);
    for (int64_t i = 0; i < width; ++i) {
      out[static_cast<size_t>(r * width + i)] = x.data()[r * width + i] * inverse * weight.data()[i];
    }
  }
  return out;
}

TEST(CpuKernels, RmsNormMatchesDoubleLoop) {
  CpuBackend backend;
  const Tensor x = random_tensor({5, 33}, 10, 3.0), weight = random_tensor({33}, 11);
  Tensor out({5, 33});
  backend.rms_norm(x, weight, 1e-5f, out);
  expect_close(out, reference_rms_norm(x, weight, 1e-5), 1e-6, 1e-5, "rms_norm");
}

TEST(CpuKernels, RmsNormInPlace) {
  CpuBackend backend;
  Tensor x = random_tensor({4, 48}, 12, 2.0);
  const Tensor weight = random_tensor({48}, 13);
  const auto expected = reference_rms_norm(x, weight, 1e-6);
  Tensor separate({4, 48});
  backend.rms_norm(x, weight, 1e-6f, separate);
  backend.rms_norm(x, weight, 1e-6f, x);
  expect_close(x, expected, 1e-6, 1e-5, "rms_norm in place");
  EXPECT_TRUE(bitwise_equal(x.data(), separate.data(), x.numel())) << "in place differs from out of place";
}

// ---------------------------------------------------------------------------------------------
// rotary, rotate-half convention (Su et al. 2021, as Hugging Face's apply_rotary_pos_emb):
//   x'[i]        = x[i] cos(t w_i) - x[i + h] sin(t w_i)
//   x'[i + h]    = x[i + h] cos(t w_i) + x[i] sin(t w_i),   w_i = theta^(-2i / head_dim), h = head_dim / 2

TEST(CpuKernels, RotaryMatchesRotateHalfFormula) {
  CpuBackend backend;
  const int64_t batch = 2, time = 7, heads = 3, head_dim = 8, half = head_dim / 2;
  const double theta = 10000.0;
  const Tensor input = random_tensor({batch, time, heads, head_dim}, 20, 2.0);
  Tensor x = input.clone();
  backend.rotary(x, theta);

  std::vector<double> expected(static_cast<size_t>(input.numel()));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < time; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = ((b * time + t) * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const double angle = double(t) * std::pow(theta, -2.0 * double(i) / double(head_dim));
          const double first = input.data()[base + i], second = input.data()[base + i + half];
          expected[static_cast<size_t>(base + i)] = first * std::cos(angle) - second * std::sin(angle);
          expected[static_cast<size_t>(base + i + half)] = second * std::cos(angle) + first * std::sin(angle);
        }
      }
    }
  }
  expect_close(x, expected, 1e-6, 1e-5, "rotary");

  // Position 0 is the identity, bit for bit, in every sequence of the batch.
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t base = b * time * heads * head_dim;
    EXPECT_TRUE(bitwise_equal(x.data() + base, input.data() + base, heads * head_dim)) << "batch " << b;
  }
  // A rotation keeps each pair's norm.
  for (int64_t v = 0; v < batch * time * heads; ++v) {
    for (int64_t i = 0; i < half; ++i) {
      const float* before = input.data() + v * head_dim;
      const float* after = x.data() + v * head_dim;
      EXPECT_NEAR(std::hypot(after[i], after[i + half]), std::hypot(before[i], before[i + half]), 1e-5);
    }
  }
}

TEST(CpuKernels, RotaryRejectsOddHeadDim) {
  CpuBackend backend;
  Tensor x = Tensor::zeros({1, 2, 1, 5});
  EXPECT_THROW(backend.rotary(x, 10000.0), Error);
}

// ---------------------------------------------------------------------------------------------
// causal_attention with grouped-query heads: query head h reads kv head h / (H / KV).

std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t batch = q.dim(0), time = q.dim(1), heads = q.dim(2), head_dim = q.dim(3), kv_heads = k.dim(2);
  const int64_t group = heads / kv_heads;
  std::vector<double> out(static_cast<size_t>(q.numel()), 0.0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = h / group;
      for (int64_t t = 0; t < time; ++t) {
        const float* query = q.data() + ((b * time + t) * heads + h) * head_dim;
        std::vector<double> scores(static_cast<size_t>(t + 1));
        double maximum = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          const float* key = k.data() + ((b * time + j) * kv_heads + kv) * head_dim;
          double dot = 0;
          for (int64_t i = 0; i < head_dim; ++i) dot += double(query[i]) * key[i];
          scores[static_cast<size_t>(j)] = dot / std::sqrt(double(head_dim));
          maximum = std::max(maximum, scores[static_cast<size_t>(j)]);
        }
        double total = 0;
        for (auto& score : scores) total += (score = std::exp(score - maximum));
        double* result = out.data() + ((b * time + t) * heads + h) * head_dim;
        for (int64_t j = 0; j <= t; ++j) {
          const float* value = v.data() + ((b * time + j) * kv_heads + kv) * head_dim;
          for (int64_t i = 0; i < head_dim; ++i) result[i] += scores[static_cast<size_t>(j)] / total * value[i];
        }
      }
    }
  }
  return out;
}

TEST(CpuKernels, CausalAttentionGroupedQueryMatchesDoubleLoop) {
  CpuBackend backend;
  const int64_t batch = 2, time = 9, heads = 4, kv_heads = 2, head_dim = 8;
  const Tensor q = random_tensor({batch, time, heads, head_dim}, 30, 2.0);
  const Tensor k = random_tensor({batch, time, kv_heads, head_dim}, 31, 2.0);
  const Tensor v = random_tensor({batch, time, kv_heads, head_dim}, 32);
  Tensor out({batch, time, heads, head_dim});
  backend.causal_attention(q, k, v, out);
  expect_close(out, reference_attention(q, k, v), 1e-6, 1e-5, "attention");

  // The first position attends only to itself: its output is its own value row, exactly.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* result = out.data() + (b * time * heads + h) * head_dim;
      const float* value = v.data() + (b * time * kv_heads + h / (heads / kv_heads)) * head_dim;
      EXPECT_TRUE(bitwise_equal(result, value, head_dim)) << "b " << b << " h " << h;
    }
  }
}

TEST(CpuKernels, CausalAttentionIgnoresTheFuture) {
  CpuBackend backend;
  const int64_t batch = 2, time = 8, heads = 4, kv_heads = 2, head_dim = 6, changed = 5;
  const Tensor q = random_tensor({batch, time, heads, head_dim}, 40);
  Tensor k = random_tensor({batch, time, kv_heads, head_dim}, 41);
  Tensor v = random_tensor({batch, time, kv_heads, head_dim}, 42);
  Tensor before({batch, time, heads, head_dim});
  backend.causal_attention(q, k, v, before);

  // Change every kv head's key and value at position `changed` in sequence 0.
  for (int64_t i = 0; i < kv_heads * head_dim; ++i) {
    k.data()[changed * kv_heads * head_dim + i] += 3.0f;
    v.data()[changed * kv_heads * head_dim + i] -= 5.0f;
  }
  Tensor after({batch, time, heads, head_dim});
  backend.causal_attention(q, k, v, after);

  const int64_t per_position = heads * head_dim;
  EXPECT_TRUE(bitwise_equal(after.data(), before.data(), changed * per_position)) << "positions before the change moved";
  EXPECT_FALSE(bitwise_equal(after.data() + changed * per_position, before.data() + changed * per_position,
                             (time - changed) * per_position))
      << "positions from the change on did not move";
  const int64_t sequence = time * per_position;
  EXPECT_TRUE(bitwise_equal(after.data() + sequence, before.data() + sequence, sequence)) << "sequence 1 moved";
}

TEST(CpuKernels, CausalAttentionRejectsHeadsNotDivisibleByKvHeads) {
  CpuBackend backend;
  const Tensor q = Tensor::zeros({1, 2, 3, 4}), k = Tensor::zeros({1, 2, 2, 4}), v = Tensor::zeros({1, 2, 2, 4});
  Tensor out({1, 2, 3, 4});
  EXPECT_THROW(backend.causal_attention(q, k, v, out), Error);
}

// ---------------------------------------------------------------------------------------------

TEST(CpuKernels, SoftmaxRowsMatchesDoubleLoop) {
  CpuBackend backend;
  Tensor x = random_tensor({4, 13}, 50, 5.0);
  // A row of large logits: exp() would overflow without subtracting the maximum.
  for (int64_t i = 0; i < 13; ++i) x.data()[3 * 13 + i] = 1000.0f - static_cast<float>(i);
  std::vector<double> expected(static_cast<size_t>(x.numel()));
  for (int64_t r = 0; r < 4; ++r) {
    const float* row = x.data() + r * 13;
    const double maximum = *std::max_element(row, row + 13);
    double total = 0;
    for (int64_t i = 0; i < 13; ++i) total += std::exp(row[i] - maximum);
    for (int64_t i = 0; i < 13; ++i) expected[static_cast<size_t>(r * 13 + i)] = std::exp(row[i] - maximum) / total;
  }
  backend.softmax_rows(x);
  expect_close(x, expected, 1e-7, 1e-5, "softmax");
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_NEAR(std::accumulate(x.data() + r * 13, x.data() + (r + 1) * 13, 0.0), 1.0, 1e-6) << "row " << r;
  }
}

// ---------------------------------------------------------------------------------------------

TEST(CpuKernels, TopKRowsDescendingTiesToLowerIndex) {
  CpuBackend backend;
  const Tensor x = Tensor::from_vector({4, 6}, {
                                                   1, 3, 3, 2, 3, 0,              // a three-way tie at the top
                                                   0.5, 0.5, 0.5, 0.5, 0.5, 0.5,  // all equal
                                                   -1, 4, 2, 4, -3, 2,            // ties at first and third place
                                                   -6, -5, -4, -3, -2, -1,        // ascending input
                                               });
  std::vector<int32_t> indices(12, -7);
  Tensor values({4, 3});
  backend.top_k_rows(x, 3, indices, values);
  EXPECT_EQ(indices, (std::vector<int32_t>{1, 2, 4, 0, 1, 2, 1, 3, 2, 5, 4, 3}));
  EXPECT_EQ(values.to_vector(), (std::vector<float>{3, 3, 3, 0.5, 0.5, 0.5, 4, 4, 2, -1, -2, -3}));
}

TEST(CpuKernels, TopKRowsMatchesStableSort) {
  CpuBackend backend;
  const int64_t rows = 9, width = 16;
  const int k = 4;
  Tensor x = random_tensor({rows, width}, 60);
  // Quantise so that ties happen often.
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::round(x.data()[i] * 4.0f) / 4.0f;
  std::vector<int32_t> indices(static_cast<size_t>(rows * k));
  Tensor values({rows, k});
  backend.top_k_rows(x, k, indices, values);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * width;
    std::vector<int32_t> order(static_cast<size_t>(width));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [row](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(indices[static_cast<size_t>(r * k + i)], order[static_cast<size_t>(i)]) << "row " << r << " rank " << i;
      EXPECT_EQ(values.data()[r * k + i], row[order[static_cast<size_t>(i)]]) << "row " << r << " rank " << i;
    }
  }
}

TEST(CpuKernels, TopKRowsRejectsKLargerThanWidth) {
  CpuBackend backend;
  const Tensor x = Tensor::zeros({2, 3});
  std::vector<int32_t> indices(8);
  Tensor values({2, 4});
  EXPECT_THROW(backend.top_k_rows(x, 4, indices, values), Error);
}

// ---------------------------------------------------------------------------------------------

TEST(CpuKernels, SwigluMatchesDoubleLoop) {
  CpuBackend backend;
  Tensor gate = random_tensor({3, 17}, 70, 8.0);
  const Tensor up = random_tensor({3, 17}, 71, 2.0);
  // Saturated gates: silu(-100) is -0 to float precision, silu(100) is 100.
  gate.data()[0] = -100.0f;
  gate.data()[1] = 100.0f;
  Tensor out({3, 17});
  backend.swiglu(gate, up, out);
  std::vector<double> expected(static_cast<size_t>(gate.numel()));
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const double g = gate.data()[i];
    expected[static_cast<size_t>(i)] = g / (1.0 + std::exp(-g)) * up.data()[i];
  }
  expect_close(out, expected, 1e-6, 1e-5, "swiglu");
  EXPECT_TRUE(std::isfinite(out.data()[0]));
}

// ---------------------------------------------------------------------------------------------

TEST(CpuKernels, GatherRowsCopiesExactly) {
  CpuBackend backend;
  const Tensor source = random_tensor({6, 5}, 80);
  const std::vector<int32_t> rows = {4, 0, 4, 2};
  Tensor out({4, 5});
  backend.gather_rows(source, rows, out);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(out.data() + i * 5, source.data() + rows[i] * 5, 5)) << "row " << i;
  }
  const std::vector<int32_t> outside = {6};
  Tensor one({1, 5});
  EXPECT_THROW(backend.gather_rows(source, outside, one), Error);
}

TEST(CpuKernels, ScatterRowsWritesOnlyTheNamedRows) {
  CpuBackend backend;
  const Tensor source = random_tensor({3, 5}, 81);
  const std::vector<int32_t> rows = {5, 1, 3};
  Tensor out({6, 5});
  out.fill(-42.0f);
  backend.scatter_rows(source, rows, out);
  for (int64_t r = 0; r < 6; ++r) {
    const auto found = std::find(rows.begin(), rows.end(), r);
    if (found == rows.end()) {
      for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(out.data()[r * 5 + i], -42.0f) << "row " << r << " was touched";
    } else {
      const int64_t from = found - rows.begin();
      EXPECT_TRUE(bitwise_equal(out.data() + r * 5, source.data() + from * 5, 5)) << "row " << r;
    }
  }
  // gather(scatter(x)) == x
  Tensor back({3, 5});
  backend.gather_rows(out, rows, back);
  EXPECT_TRUE(bitwise_equal(back.data(), source.data(), source.numel()));
  const std::vector<int32_t> negative = {-1, 0, 1};
  EXPECT_THROW(backend.scatter_rows(source, negative, out), Error);
}

// ---------------------------------------------------------------------------------------------
// combine_slots: out[m] (+)= sum_s weights[m, s] * slots[m * S + s]

TEST(CpuKernels, CombineSlotsMatchesDoubleLoop) {
  CpuBackend backend;
  const int64_t tokens = 5, slot_count = 3, width = 11;
  const Tensor slots = random_tensor({tokens * slot_count, width}, 90, 3.0);
  const Tensor weights = random_tensor({tokens, slot_count}, 91);
  for (const bool accumulate : {false, true}) {
    Tensor out = random_tensor({tokens, width}, 92);
    const Tensor initial = out.clone();
    backend.combine_slots(slots, weights, out, accumulate);
    std::vector<double> expected(static_cast<size_t>(tokens * width));
    for (int64_t m = 0; m < tokens; ++m) {
      for (int64_t i = 0; i < width; ++i) {
        double sum = accumulate ? initial.data()[m * width + i] : 0.0;
        for (int64_t s = 0; s < slot_count; ++s) {
          sum += double(weights.data()[m * slot_count + s]) * slots.data()[(m * slot_count + s) * width + i];
        }
        expected[static_cast<size_t>(m * width + i)] = sum;
      }
    }
    expect_close(out, expected, 1e-6, 1e-5, accumulate ? "combine, accumulate" : "combine");
  }
}

TEST(CpuKernels, CombineSlotRowsReadsInPlaceAndEqualsCombineSlotsBitForBit) {
  CpuBackend backend;
  const int64_t tokens = 6, slot_count = 2, width = 9, spare = 3;
  const Tensor weights = random_tensor({tokens, slot_count}, 93);
  // The outputs in a scrambled order with unused rows between: slot i lives at row_of_slot[i].
  const Tensor rows = random_tensor({tokens * slot_count + spare, width}, 94, 2.0);
  std::vector<int32_t> row_of_slot(static_cast<size_t>(tokens * slot_count));
  for (size_t i = 0; i < row_of_slot.size(); ++i) row_of_slot[i] = static_cast<int32_t>((i * 7 + 2) % (row_of_slot.size() + spare));
  Tensor slots({tokens * slot_count, width});
  backend.gather_rows(rows, row_of_slot, slots);
  for (const bool accumulate : {false, true}) {
    Tensor in_place = random_tensor({tokens, width}, 95), copied = in_place.clone();
    backend.combine_slot_rows(rows, row_of_slot, weights, in_place, accumulate);
    backend.combine_slots(slots, weights, copied, accumulate);
    EXPECT_EQ(std::memcmp(in_place.data(), copied.data(), static_cast<size_t>(copied.numel()) * sizeof(float)), 0)
        << (accumulate ? "accumulate" : "overwrite");
    Tensor by_default = random_tensor({tokens, width}, 95);
    backend.Backend::combine_slot_rows(rows, row_of_slot, weights, by_default, accumulate);  // the gather-then-combine default
    if (!accumulate) {
      EXPECT_EQ(std::memcmp(by_default.data(), copied.data(), static_cast<size_t>(copied.numel()) * sizeof(float)), 0);
    }
  }
  std::vector<int32_t> outside = row_of_slot;
  outside[3] = static_cast<int32_t>(rows.dim(0));
  Tensor out({tokens, width});
  EXPECT_THROW(backend.combine_slot_rows(rows, outside, weights, out, false), Error);
}

TEST(CpuKernels, AddInPlace) {
  CpuBackend backend;
  Tensor x = random_tensor({4, 7}, 100);
  const Tensor y = random_tensor({4, 7}, 101);
  const Tensor before = x.clone();
  backend.add_in_place(x, y);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(x.data()[i], before.data()[i] + y.data()[i]);
}

}  // namespace
}  // namespace temoe
