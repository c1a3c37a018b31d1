// The CUDA backend's forward kernels against the CPU backend (the reference), on random inputs
// whose shapes are not multiples of any block size. Tolerances, relative to the largest expected
// magnitude: 1e-4 for GEMMs and attention (long dot products summed in another order), 1e-5 for
// the row kernels (expf and tree sums), exact where the kernel does the CPU's arithmetic in the
// CPU's order (rotary, gather / scatter, top-k).
#include <gtest/gtest.h>

#include <numeric>

#include "src/tensor/backend.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

using testing::close_to;
using testing::random_tensor;
using testing::to_cuda;

class CudaForwardKernels : public testing::CpuAndCudaBackends {};

TEST_F(CudaForwardKernels, MatmulTransposedMatchesCpu) {
  for (const bool accumulate : {false, true}) {
    const Tensor a = random_tensor({37, 53}, 1), b = random_tensor({29, 53}, 2), start = random_tensor({37, 29}, 3);
    Tensor expected = start.clone(), actual = to_cuda(start);
    cpu_->matmul_transposed(a, b, expected, accumulate);
    gpu_->matmul_transposed(to_cuda(a), to_cuda(b), actual, accumulate);
    EXPECT_TRUE(close_to(actual, expected, 1e-4)) << "accumulate " << accumulate;
  }
}

TEST_F(CudaForwardKernels, MatmulMatchesCpu) {
  for (const bool accumulate : {false, true}) {
    const Tensor a = random_tensor({37, 53}, 4), b = random_tensor({53, 29}, 5), start = random_tensor({37, 29}, 6);
    Tensor expected = start.clone(), actual = to_cuda(start);
    cpu_->matmul(a, b, expected, accumulate);
    gpu_->matmul(to_cuda(a), to_cuda(b), actual, accumulate);
    EXPECT_TRUE(close_to(actual, expected, 1e-4)) << "accumulate " << accumulate;
  }
}

TEST_F(CudaForwardKernels, MatmulTransposedLeftMatchesCpu) {
  for (const bool accumulate : {false, true}) {
    const Tensor a = random_tensor({41, 23}, 7), b = random_tensor({41, 31}, 8), start = random_tensor({23, 31}, 9);
    Tensor expected = start.clone(), actual = to_cuda(start);
    cpu_->matmul_transposed_left(a, b, expected, accumulate);
    gpu_->matmul_transposed_left(to_cuda(a), to_cuda(b), actual, accumulate);
    EXPECT_TRUE(close_to(actual, expected, 1e-4)) << "accumulate " << accumulate;
  }
}

TEST_F(CudaForwardKernels, EmptyInnerDimensionZeroesOrKeeps) {
  const Tensor a({5, 0}), b({7, 0});
  const Tensor start = random_tensor({5, 7}, 10);
  Tensor kept = to_cuda(start), zeroed = to_cuda(start);
  gpu_->matmul_transposed(to_cuda(a), to_cuda(b), kept, true);
  gpu_->matmul_transposed(to_cuda(a), to_cuda(b), zeroed, false);
  EXPECT_EQ(kept.to_vector(), start.to_vector());
  EXPECT_EQ(zeroed.to_vector(), std::vector<float>(35, 0.0f));
}

TEST_F(CudaForwardKernels, RmsNormMatchesCpuAlsoInPlace) {
  const Tensor x = random_tensor({19, 300}, 11), weight = random_tensor({300}, 12);
  Tensor expected({19, 300}), actual({19, 300}, Device::cuda);
  cpu_->rms_norm(x, weight, 1e-6f, expected);
  gpu_->rms_norm(to_cuda(x), to_cuda(weight), 1e-6f, actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-5));
  Tensor in_place = to_cuda(x);
  gpu_->rms_norm(in_place, to_cuda(weight), 1e-6f, in_place);  // OLMoE's QK-norm normalises in place
  EXPECT_TRUE(close_to(in_place, expected, 1e-5));
}

TEST_F(CudaForwardKernels, RotaryIsTheCpusBitForBit) {
  const Tensor x = random_tensor({2, 13, 3, 16}, 13);
  Tensor expected = x.clone(), actual = to_cuda(x);
  cpu_->rotary(expected, 10000.0);
  gpu_->rotary(actual, 10000.0);
  EXPECT_EQ(actual.to_vector(), expected.to_vector());
  Tensor expected_from = x.clone(), actual_from = to_cuda(x);
  cpu_->rotary_from(expected_from, 500000.0, 17);
  gpu_->rotary_from(actual_from, 500000.0, 17);
  EXPECT_EQ(actual_from.to_vector(), expected_from.to_vector());
}

TEST_F(CudaForwardKernels, CausalAttentionMatchesCpu) {
  // Grouped-query: 4 query heads over 2 kv heads; 37 positions (more than one warp of keys).
  const Tensor q = random_tensor({2, 37, 4, 16}, 14), k = random_tensor({2, 37, 2, 16}, 15),
               v = random_tensor({2, 37, 2, 16}, 16);
  Tensor expected(q.shape()), actual(q.shape(), Device::cuda);
  cpu_->causal_attention(q, k, v, expected);
  gpu_->causal_attention(to_cuda(q), to_cuda(k), to_cuda(v), actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-4));
}

TEST_F(CudaForwardKernels, CachedAttentionMatchesCpu) {
  // A chunk of 5 queries at positions 20..24 against a cache of 48 positions (filled past them:
  // entries beyond a query's position must be ignored).
  const Tensor q = random_tensor({2, 5, 4, 64}, 17), k = random_tensor({2, 48, 2, 64}, 18),
               v = random_tensor({2, 48, 2, 64}, 19);
  Tensor expected(q.shape()), actual(q.shape(), Device::cuda);
  cpu_->cached_attention(q, k, v, 20, expected);
  gpu_->cached_attention(to_cuda(q), to_cuda(k), to_cuda(v), 20, actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-4));
}

TEST_F(CudaForwardKernels, SoftmaxRowsMatchesCpu) {
  const Tensor x = random_tensor({23, 67}, 20, 3.0f);
  Tensor expected = x.clone(), actual = to_cuda(x);
  cpu_->softmax_rows(expected);
  gpu_->softmax_rows(actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-5));
}

TEST_F(CudaForwardKernels, TopKMatchesCpuIncludingTies) {
  // Values on a coarse grid so that rows have ties, which go to the lower index; width 70 spans
  // more than two warp strides.
  Tensor x = random_tensor({50, 70}, 21);
  std::vector<float> values = x.to_vector();
  for (float& value : values) value = std::round(value * 2.0f) / 2.0f;
  x = Tensor::from_vector({50, 70}, values);
  for (const int k : {1, 4, 8}) {
    std::vector<int32_t> expected_indices(50 * static_cast<size_t>(k)), actual_indices(expected_indices.size(), -7);
    Tensor expected({50, k}), actual({50, k}, Device::cuda);
    cpu_->top_k_rows(x, k, expected_indices, expected);
    gpu_->top_k_rows(to_cuda(x), k, actual_indices, actual);
    EXPECT_EQ(actual_indices, expected_indices) << "k = " << k;
    EXPECT_EQ(actual.to_vector(), expected.to_vector()) << "k = " << k;
  }
}

TEST_F(CudaForwardKernels, SwigluMatchesCpu) {
  const Tensor gate = random_tensor({33, 90}, 22, 3.0f), up = random_tensor({33, 90}, 23);
  Tensor expected(gate.shape()), actual(gate.shape(), Device::cuda);
  cpu_->swiglu(gate, up, expected);
  gpu_->swiglu(to_cuda(gate), to_cuda(up), actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-5));
}

TEST_F(CudaForwardKernels, GatherScatterAndScatterAddAreExact) {
  const Tensor source = random_tensor({12, 37}, 24);
  const std::vector<int32_t> rows = {3, 0, 11, 3, 7, 3, 0};  // repeats: gather reads, scatter-add sums them
  Tensor gathered_cpu({7, 37}), gathered_gpu({7, 37}, Device::cuda);
  cpu_->gather_rows(source, rows, gathered_cpu);
  gpu_->gather_rows(to_cuda(source), rows, gathered_gpu);
  EXPECT_EQ(gathered_gpu.to_vector(), gathered_cpu.to_vector());

  const Tensor update = random_tensor({7, 37}, 25), start = random_tensor({12, 37}, 26);
  Tensor added_cpu = start.clone(), added_gpu = to_cuda(start);
  cpu_->scatter_add_rows(update, rows, added_cpu);
  gpu_->scatter_add_rows(to_cuda(update), rows, added_gpu);
  EXPECT_EQ(added_gpu.to_vector(), added_cpu.to_vector());

  // scatter: a repeated destination keeps its last source, as the CPU's in-order writes do.
  Tensor scattered_cpu = start.clone(), scattered_gpu = to_cuda(start);
  cpu_->scatter_rows(update, rows, scattered_cpu);
  gpu_->scatter_rows(to_cuda(update), rows, scattered_gpu);
  EXPECT_EQ(scattered_gpu.to_vector(), scattered_cpu.to_vector());
}

TEST_F(CudaForwardKernels, CombineSlotsMatchesCpu) {
  // Products and sums are rounded as the CPU rounds them, so agreement is exact by design; the
  // test allows one rounding step in case a compiler contracts the CPU loop.
  const Tensor slots = random_tensor({21 * 3, 45}, 27), weights = random_tensor({21, 3}, 28),
               start = random_tensor({21, 45}, 29);
  for (const bool accumulate : {false, true}) {
    Tensor expected = start.clone(), actual = to_cuda(start);
    cpu_->combine_slots(slots, weights, expected, accumulate);
    gpu_->combine_slots(to_cuda(slots), to_cuda(weights), actual, accumulate);
    EXPECT_TRUE(close_to(actual, expected, 1e-6)) << "accumulate " << accumulate;
  }
}

TEST_F(CudaForwardKernels, AddInPlaceIsExact) {
  const Tensor x = random_tensor({17, 33}, 30), y = random_tensor({17, 33}, 31);
  Tensor expected = x.clone(), actual = to_cuda(x);
  cpu_->add_in_place(expected, y);
  gpu_->add_in_place(actual, to_cuda(y));
  EXPECT_EQ(actual.to_vector(), expected.to_vector());
}

TEST_F(CudaForwardKernels, HostTensorsAreRejectedByName) {
  const Tensor x = random_tensor({4, 8}, 32), weight = random_tensor({8}, 33);
  Tensor out({4, 8}, Device::cuda);
  try {
    gpu_->rms_norm(x, to_cuda(weight), 1e-6f, out);
    FAIL() << "a host tensor was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("rms_norm x is on cpu"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace temoe
