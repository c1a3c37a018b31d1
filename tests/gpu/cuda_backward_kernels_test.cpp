// The CUDA backend's backward kernels against the CPU backend, on random inputs. Tolerances are
// relative to the largest expected magnitude: 1e-4 for attention (long sums in another order),
// 1e-5 for the rest. Weight gradients are added to, so they start from random values here.
#include <gtest/gtest.h>

#include "src/tensor/backend.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

using testing::close_to;
using testing::random_tensor;
using testing::to_cuda;

class CudaBackwardKernels : public testing::CpuAndCudaBackends {};

TEST_F(CudaBackwardKernels, RmsNormBackwardMatchesCpu) {
  const Tensor x = random_tensor({19, 300}, 1), weight = random_tensor({300}, 2), grad_out = random_tensor({19, 300}, 3);
  const Tensor grad_x_start = random_tensor({19, 300}, 4), grad_weight_start = random_tensor({300}, 5);
  for (const bool accumulate : {false, true}) {
    Tensor grad_x_cpu = grad_x_start.clone(), grad_weight_cpu = grad_weight_start.clone();
    Tensor grad_x_gpu = to_cuda(grad_x_start), grad_weight_gpu = to_cuda(grad_weight_start);
    cpu_->rms_norm_backward(x, weight, 1e-6f, grad_out, grad_x_cpu, grad_weight_cpu, accumulate);
    gpu_->rms_norm_backward(to_cuda(x), to_cuda(weight), 1e-6f, to_cuda(grad_out), grad_x_gpu, grad_weight_gpu,
                            accumulate);
    EXPECT_TRUE(close_to(grad_x_gpu, grad_x_cpu, 1e-5)) << "accumulate " << accumulate;
    EXPECT_TRUE(close_to(grad_weight_gpu, grad_weight_cpu, 1e-5)) << "accumulate " << accumulate;
  }
}

TEST_F(CudaBackwardKernels, RotaryBackwardIsTheCpusBitForBit) {
  const Tensor grad = random_tensor({2, 11, 3, 32}, 6);
  Tensor expected = grad.clone(), actual = to_cuda(grad);
  cpu_->rotary_backward(expected, 10000.0);
  gpu_->rotary_backward(actual, 10000.0);
  EXPECT_EQ(actual.to_vector(), expected.to_vector());
}

TEST_F(CudaBackwardKernels, CausalAttentionBackwardMatchesCpu) {
  // 6 query heads over 2 kv heads (groups of 3); 70 positions: more than one staging chunk of
  // (head, query) pairs per key.
  const Tensor q = random_tensor({2, 70, 6, 16}, 7), k = random_tensor({2, 70, 2, 16}, 8),
               v = random_tensor({2, 70, 2, 16}, 9), grad_out = random_tensor({2, 70, 6, 16}, 10);
  Tensor dq_cpu(q.shape()), dk_cpu(k.shape()), dv_cpu(k.shape());
  Tensor dq_gpu(q.shape(), Device::cuda), dk_gpu(k.shape(), Device::cuda), dv_gpu(k.shape(), Device::cuda);
  cpu_->causal_attention_backward(q, k, v, grad_out, dq_cpu, dk_cpu, dv_cpu);
  gpu_->causal_attention_backward(to_cuda(q), to_cuda(k), to_cuda(v), to_cuda(grad_out), dq_gpu, dk_gpu, dv_gpu);
  EXPECT_TRUE(close_to(dq_gpu, dq_cpu, 1e-4));
  EXPECT_TRUE(close_to(dk_gpu, dk_cpu, 1e-4));
  EXPECT_TRUE(close_to(dv_gpu, dv_cpu, 1e-4));
  // Deterministic: no atomics, so a second run gives the same bits.
  Tensor dq_again(q.shape(), Device::cuda), dk_again(k.shape(), Device::cuda), dv_again(k.shape(), Device::cuda);
  gpu_->causal_attention_backward(to_cuda(q), to_cuda(k), to_cuda(v), to_cuda(grad_out), dq_again, dk_again, dv_again);
  EXPECT_EQ(dq_again.to_vector(), dq_gpu.to_vector());
  EXPECT_EQ(dk_again.to_vector(), dk_gpu.to_vector());
  EXPECT_EQ(dv_again.to_vector(), dv_gpu.to_vector());
}

TEST_F(CudaBackwardKernels, SoftmaxRowsBackwardMatchesCpu) {
  Tensor probabilities = random_tensor({23, 67}, 11);
  cpu_->softmax_rows(probabilities);
  const Tensor grad = random_tensor({23, 67}, 12);
  Tensor expected(grad.shape()), actual(grad.shape(), Device::cuda);
  cpu_->softmax_rows_backward(probabilities, grad, expected);
  gpu_->softmax_rows_backward(to_cuda(probabilities), to_cuda(grad), actual);
  EXPECT_TRUE(close_to(actual, expected, 1e-5));
}

TEST_F(CudaBackwardKernels, SwigluBackwardMatchesCpu) {
  const Tensor gate = random_tensor({33, 90}, 13, 3.0f), up = random_tensor({33, 90}, 14),
               grad_out = random_tensor({33, 90}, 15);
  Tensor dg_cpu(gate.shape()), du_cpu(gate.shape()), dg_gpu(gate.shape(), Device::cuda), du_gpu(gate.shape(), Device::cuda);
  cpu_->swiglu_backward(gate, up, grad_out, dg_cpu, du_cpu);
  gpu_->swiglu_backward(to_cuda(gate), to_cuda(up), to_cuda(grad_out), dg_gpu, du_gpu);
  EXPECT_TRUE(close_to(dg_gpu, dg_cpu, 1e-5));
  EXPECT_TRUE(close_to(du_gpu, du_cpu, 1e-5));
}

TEST_F(CudaBackwardKernels, CombineSlotsBackwardMatchesCpu) {
  const Tensor slots = random_tensor({21 * 3, 45}, 16), weights = random_tensor({21, 3}, 17),
               grad_out = random_tensor({21, 45}, 18);
  Tensor grad_slots_cpu(slots.shape()), grad_weights_cpu(weights.shape());
  Tensor grad_slots_gpu(slots.shape(), Device::cuda), grad_weights_gpu(weights.shape(), Device::cuda);
  cpu_->combine_slots_backward(slots, weights, grad_out, grad_slots_cpu, grad_weights_cpu);
  gpu_->combine_slots_backward(to_cuda(slots), to_cuda(weights), to_cuda(grad_out), grad_slots_gpu, grad_weights_gpu);
  EXPECT_EQ(grad_slots_gpu.to_vector(), grad_slots_cpu.to_vector());  // one product each
  EXPECT_TRUE(close_to(grad_weights_gpu, grad_weights_cpu, 1e-5));
}

TEST_F(CudaBackwardKernels, CrossEntropyMatchesCpuWithUnlabelledRows) {
  const Tensor logits = random_tensor({9, 301}, 19, 4.0f);
  const std::vector<int32_t> targets = {0, 300, -1, 17, 150, -1, 299, 1, 42};
  Tensor losses_cpu({9}), grads_cpu(logits.shape()), losses_gpu({9}, Device::cuda), grads_gpu(logits.shape(), Device::cuda);
  cpu_->cross_entropy(logits, targets, 0.25f, losses_cpu, grads_cpu);
  gpu_->cross_entropy(to_cuda(logits), targets, 0.25f, losses_gpu, grads_gpu);
  EXPECT_TRUE(close_to(losses_gpu, losses_cpu, 1e-5));
  EXPECT_TRUE(close_to(grads_gpu, grads_cpu, 1e-5));
  const std::vector<float> losses = losses_gpu.to_vector();
  EXPECT_EQ(losses[2], 0.0f);
  EXPECT_EQ(losses[5], 0.0f);
}

}  // namespace
}  // namespace temoe
