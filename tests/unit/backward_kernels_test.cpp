// Every CPU backward kernel against central finite differences of its forward kernel (fp32
// kernels, the objective J = sum_i w_i out_i accumulated in double, w random), against a double
// loop where the kernel is linear, and for bit-identical results at 1 and 2 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/tensor/cpu_backend.hpp"

namespace temoe {
namespace {

Tensor random_tensor(Shape shape, uint64_t seed, double scale = 1.0) {
  Tensor tensor(std::move(shape));
  CounterRandom random(seed, {});
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(scale * (2.0 * random.uniform() - 1.0));
  return tensor;
}

double weighted_sum(const Tensor& out, const Tensor& weights) {
  double sum = 0.0;
  for (int64_t i = 0; i < out.numel(); ++i) sum += static_cast<double>(out.data()[i]) * weights.data()[i];
  return sum;
}

// Checks analytic[i] against (J(x + h e_i) - J(x - h e_i)) / (2h) for up to `samples` elements
// of `input` (evenly spread), where J re-runs the forward. The step actually applied (after
// rounding x +- h to float) is used as the denominator. Tolerance: |fd - analytic| <= tolerance *
// (|analytic| + max|analytic|).
void expect_matches_finite_differences(Tensor& input, const Tensor& analytic, const std::function<double()>& objective,
                                       const std::string& what, double h = 1e-2, double tolerance = 2e-3,
                                       int64_t samples = 48) {
  ASSERT_EQ(input.numel(), analytic.numel()) << what;
  double scale = 0.0;
  for (int64_t i = 0; i < analytic.numel(); ++i) scale = std::max(scale, std::fabs(double(analytic.data()[i])));
  ASSERT_GT(scale, 0.0) << what << ": the analytic gradient is zero";
  const int64_t stride = std::max<int64_t>(1, input.numel() / samples);
  double worst = 0.0;
  int64_t worst_index = -1;
  for (int64_t i = 0; i < input.numel(); i += stride) {
    const float original = input.data()[i];
    const float plus = original + static_cast<float>(h), minus = original - static_cast<float>(h);
    input.data()[i] = plus;
    const double up = objective();
    input.data()[i] = minus;
    const double down = objective();
    input.data()[i] = original;
    const double numeric = (up - down) / (static_cast<double>(plus) - static_cast<double>(minus));
    const double error = std::fabs(numeric - analytic.data()[i]) / (std::fabs(double(analytic.data()[i])) + scale);
    if (error > worst) {
      worst = error;
      worst_index = i;
    }
  }
  EXPECT_LE(worst, tolerance) << what << ": element " << worst_index << " analytic "
                              << analytic.data()[std::max<int64_t>(worst_index, 0)] << " (max " << scale << ")";
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<size_t>(a.numel()) * 4) == 0;
}

TEST(BackwardKernels, MatmulMatchesDoubleLoop) {
  CpuBackend backend;
  for (const int64_t m : {0, 1, 7, 70}) {
    const int64_t k = 13, n = 9;
    const Tensor a = random_tensor({m, k}, 1), b = random_tensor({k, n}, 2);
    Tensor out = random_tensor({m, n}, 3);
    const Tensor initial = out.clone();
    backend.matmul(a, b, out, true);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = initial.data()[i * n + j];
        for (int64_t p = 0; p < k; ++p) sum += double(a.data()[i * k + p]) * b.data()[p * n + j];
        EXPECT_NEAR(out.data()[i * n + j], sum, 1e-5) << "m " << m;
      }
    }
  }
}

TEST(BackwardKernels, MatmulTransposedLeftMatchesDoubleLoop) {
  CpuBackend backend;
  for (const int64_t m : {0, 1, 7, 70}) {
    const int64_t n = 11, k = 5;
    const Tensor a = random_tensor({m, n}, 4), b = random_tensor({m, k}, 5);
    Tensor out({n, k});
    out.fill(NAN);  // overwritten when not accumulating, even with no rows
    backend.matmul_transposed_left(a, b, out, false);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        double sum = 0.0;
        for (int64_t r = 0; r < m; ++r) sum += double(a.data()[r * n + i]) * b.data()[r * k + j];
        EXPECT_NEAR(out.data()[i * k + j], sum, 1e-5) << "m " << m;
      }
    }
  }
}

TEST(BackwardKernels, RmsNormBackwardMatchesFiniteDifferences) {
  CpuBackend backend;
  const int64_t rows = 6, width = 19;
  const float eps = 1e-5f;
  Tensor x = random_tensor({rows, width}, 10, 2.0);
  Tensor weight = random_tensor({width}, 11);
  const Tensor upstream = random_tensor({rows, width}, 12);
  Tensor out({rows, width});
  const auto objective = [&] {
    backend.rms_norm(x, weight, eps, out);
    return weighted_sum(out, upstream);
  };
  Tensor grad_x({rows, width}), grad_weight = Tensor::zeros({width});
  backend.rms_norm_backward(x, weight, eps, upstream, grad_x, grad_weight, false);
  expect_matches_finite_differences(x, grad_x, objective, "rms_norm dx", 1e-2);
  expect_matches_finite_differences(weight, grad_weight, objective, "rms_norm dweight", 1e-2);

  // accumulate adds to grad_x; the weight gradient always adds.
  Tensor again = grad_x.clone(), weight_again = grad_weight.clone();
  backend.rms_norm_backward(x, weight, eps, upstream, again, weight_again, true);
  for (int64_t i = 0; i < again.numel(); ++i) EXPECT_FLOAT_EQ(again.data()[i], 2.0f * grad_x.data()[i]);
  for (int64_t i = 0; i < width; ++i) EXPECT_FLOAT_EQ(weight_again.data()[i], 2.0f * grad_weight.data()[i]);
}

TEST(BackwardKernels, RotaryBackwardIsTheTransposeOfRotary) {
  // Rotary is linear, so <y, R x> = <R^T y, x> for all x, y.
  CpuBackend backend;
  const Tensor x = random_tensor({2, 9, 3, 8}, 20), y = random_tensor({2, 9, 3, 8}, 21);
  Tensor rotated = x.clone(), back = y.clone();
  backend.rotary(rotated, 10000.0);
  backend.rotary_backward(back, 10000.0);
  EXPECT_NEAR(weighted_sum(rotated, y), weighted_sum(back, x), 1e-5);
  // And R^T R = I.
  backend.rotary_backward(rotated, 10000.0);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(rotated.data()[i], x.data()[i], 1e-6);
}

TEST(BackwardKernels, CausalAttentionBackwardMatchesFiniteDifferences) {
  CpuBackend backend;
  const int64_t batch = 2, time = 7, heads = 4, kv_heads = 2, head_dim = 6;
  Tensor q = random_tensor({batch, time, heads, head_dim}, 30, 1.5);
  Tensor k = random_tensor({batch, time, kv_heads, head_dim}, 31, 1.5);
  Tensor v = random_tensor({batch, time, kv_heads, head_dim}, 32);
  const Tensor upstream = random_tensor({batch, time, heads, head_dim}, 33);
  Tensor out(q.shape());
  const auto objective = [&] {
    backend.causal_attention(q, k, v, out);
    return weighted_sum(out, upstream);
  };
  Tensor grad_q(q.shape()), grad_k(k.shape()), grad_v(v.shape());
  grad_k.fill(NAN);  // must be overwritten
  backend.causal_attention_backward(q, k, v, upstream, grad_q, grad_k, grad_v);
  expect_matches_finite_differences(q, grad_q, objective, "attention dq", 1e-2, 2e-3, 96);
  expect_matches_finite_differences(k, grad_k, objective, "attention dk", 1e-2, 2e-3, 96);
  expect_matches_finite_differences(v, grad_v, objective, "attention dv", 1e-2, 2e-3, 96);
  // The last position's key and value influence nothing but the last query: their gradients
  // come from one (query, key) pair per head.
  for (int64_t i = 0; i < head_dim; ++i) EXPECT_TRUE(std::isfinite(grad_k.data()[((time - 1) * kv_heads) * head_dim + i]));
}

TEST(BackwardKernels, SoftmaxRowsBackwardMatchesFiniteDifferences) {
  CpuBackend backend;
  Tensor logits = random_tensor({5, 8}, 40, 3.0);
  const Tensor upstream = random_tensor({5, 8}, 41);
  Tensor probabilities = logits.clone();
  backend.softmax_rows(probabilities);
  Tensor grad({5, 8});
  backend.softmax_rows_backward(probabilities, upstream, grad);
  Tensor scratch({5, 8});
  const auto objective = [&] {
    std::copy(logits.data(), logits.data() + logits.numel(), scratch.data());
    backend.softmax_rows(scratch);
    return weighted_sum(scratch, upstream);
  };
  expect_matches_finite_differences(logits, grad, objective, "softmax dlogits", 1e-2);
}

TEST(BackwardKernels, SwigluBackwardMatchesFiniteDifferences) {
  CpuBackend backend;
  Tensor gate = random_tensor({4, 33}, 50, 4.0), up = random_tensor({4, 33}, 51, 2.0);
  const Tensor upstream = random_tensor({4, 33}, 52);
  Tensor out({4, 33});
  const auto objective = [&] {
    backend.swiglu(gate, up, out);
    return weighted_sum(out, upstream);
  };
  Tensor grad_gate({4, 33}), grad_up({4, 33});
  backend.swiglu_backward(gate, up, upstream, grad_gate, grad_up);
  expect_matches_finite_differences(gate, grad_gate, objective, "swiglu dgate", 1e-2, 2e-3, 132);
  expect_matches_finite_differences(up, grad_up, objective, "swiglu dup", 1e-2, 2e-3, 132);
}

TEST(BackwardKernels, ScatterAddRowsSumsRepeatedRowsInOrder) {
  CpuBackend backend;
  const Tensor source = Tensor::from_vector({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  Tensor out = Tensor::from_vector({3, 2}, {10, 20, 30, 40, 50, 60});
  const std::vector<int32_t> rows = {2, 0, 2, 2};
  backend.scatter_add_rows(source, rows, out);
  EXPECT_EQ(out.to_vector(), (std::vector<float>{13, 24, 30, 40, 50 + 1 + 5 + 7, 60 + 2 + 6 + 8}));
  const std::vector<int32_t> bad = {0, 1, 3, 0};
  EXPECT_THROW(backend.scatter_add_rows(source, bad, out), std::exception);
}

TEST(BackwardKernels, CombineSlotsBackwardMatchesFiniteDifferences) {
  CpuBackend backend;
  const int64_t tokens = 5, slots = 3, width = 7;
  Tensor values = random_tensor({tokens * slots, width}, 60), weights = random_tensor({tokens, slots}, 61);
  const Tensor upstream = random_tensor({tokens, width}, 62);
  Tensor out({tokens, width});
  const auto objective = [&] {
    backend.combine_slots(values, weights, out, false);
    return weighted_sum(out, upstream);
  };
  Tensor grad_values(values.shape()), grad_weights(weights.shape());
  backend.combine_slots_backward(values, weights, upstream, grad_values, grad_weights);
  expect_matches_finite_differences(values, grad_values, objective, "combine dslots", 1e-2, 1e-3);
  expect_matches_finite_differences(weights, grad_weights, objective, "combine dweights", 1e-2, 1e-3);
}

TEST(BackwardKernels, CrossEntropyMatchesDoubleLoopAndFiniteDifferences) {
  CpuBackend backend;
  const int64_t rows = 6, vocab = 11;
  Tensor logits = random_tensor({rows, vocab}, 70, 4.0);
  const std::vector<int32_t> targets = {3, 0, 10, -1, 7, 7};
  Tensor losses({rows}), grad({rows, vocab});
  backend.cross_entropy(logits, targets, 0.25f, losses, grad);
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[static_cast<size_t>(r)] < 0) {
      EXPECT_EQ(losses.data()[r], 0.0f);
      for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(grad.data()[r * vocab + i], 0.0f);
      continue;
    }
    double total = 0.0;
    for (int64_t i = 0; i < vocab; ++i) total += std::exp(double(logits.data()[r * vocab + i]));
    EXPECT_NEAR(losses.data()[r], std::log(total) - logits.data()[r * vocab + targets[static_cast<size_t>(r)]], 1e-5);
  }
  Tensor scratch_losses({rows}), scratch_grad({rows, vocab});
  const auto objective = [&] {
    backend.cross_entropy(logits, targets, 1.0f, scratch_losses, scratch_grad);
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) sum += 0.25 * scratch_losses.data()[r];
    return sum;
  };
  expect_matches_finite_differences(logits, grad, objective, "cross_entropy dlogits", 1e-2, 2e-3, 66);
  const std::vector<int32_t> outside = {3, 0, 11, 1, 2, 3};
  EXPECT_THROW(backend.cross_entropy(logits, outside, 1.0f, losses, grad), std::exception);
}

TEST(BackwardKernels, ResultsDoNotDependOnTheThreadCount) {
  CpuBackend backend;
  // Large enough to pass the kernels' threshold for running on more than one thread.
  const Tensor q = random_tensor({3, 41, 4, 8}, 80), k = random_tensor({3, 41, 2, 8}, 81),
               v = random_tensor({3, 41, 2, 8}, 82), upstream = random_tensor({3, 41, 4, 8}, 83);
  const Tensor x = random_tensor({1000, 40}, 84), weight = random_tensor({40}, 85), up = random_tensor({1000, 40}, 86);
  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<Tensor> results = {Tensor(q.shape()), Tensor(k.shape()), Tensor(v.shape()), Tensor(x.shape()),
                                   Tensor::zeros({40})};
    backend.causal_attention_backward(q, k, v, upstream, results[0], results[1], results[2]);
    backend.rms_norm_backward(x, weight, 1e-5f, up, results[3], results[4], false);
    return results;
  };
  const int original = omp_get_max_threads();
  const auto one = run(1), two = run(2);
  omp_set_num_threads(original);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(bitwise_equal(one[i], two[i])) << "result " << i;
}

}  // namespace
}  // namespace temoe
