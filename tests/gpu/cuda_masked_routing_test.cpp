// The CUDA backend's routing inside held masks, the three gate rules (Mixtral's renormalised
// top-k, OLMoE's / Qwen's plain probabilities, gpt-oss's softmax over the chosen logits) and the
// self-distillation scores, against the CPU backend. The gates are compared as values, not only
// as chosen experts: a gate rule that picks the right experts with the wrong weights would pass a
// test of the choice alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

using testing::close_to;
using testing::random_tensor;
using testing::to_cuda;

class CudaMaskedRouting : public testing::CpuAndCudaBackends {};

// Every token may use `allowed` of `experts` experts, a different set per token.
std::vector<uint8_t> held_flags(int64_t tokens, int64_t experts, int64_t allowed) {
  std::vector<uint8_t> flags(static_cast<size_t>(tokens * experts), 0);
  for (int64_t token = 0; token < tokens; ++token) {
    for (int64_t j = 0; j < allowed; ++j) flags[static_cast<size_t>(token * experts + (token * 5 + j * 3) % experts)] = 1;
  }
  return flags;
}

TEST_F(CudaMaskedRouting, MaskRowsSetsExactlyTheDisallowedLogitsToMinusInfinity) {
  const int64_t tokens = 45, experts = 16;
  const Tensor logits = random_tensor({tokens, experts}, 21);
  const auto flags = held_flags(tokens, experts, 6);
  Tensor expected = logits.clone(), actual = to_cuda(logits);
  cpu_->mask_rows(expected, flags);
  gpu_->mask_rows(actual, flags);
  EXPECT_EQ(actual.to_vector(), expected.to_vector());
  const std::vector<float> values = actual.to_vector();
  for (size_t i = 0; i < flags.size(); ++i) EXPECT_EQ(std::isinf(values[i]) && values[i] < 0, flags[i] == 0) << i;
}

TEST_F(CudaMaskedRouting, MaskedTopKAndEveryGateRuleMatchCpu) {
  const int64_t tokens = 67, experts = 32, k = 4;
  const Tensor logits = random_tensor({tokens, experts}, 22, 2.0f);
  Tensor probabilities = logits.clone();
  cpu_->softmax_rows(probabilities);
  const Tensor device_logits = to_cuda(logits), device_probabilities = to_cuda(probabilities);
  const auto flags = held_flags(tokens, experts, 8);
  Tensor masked = logits.clone(), device_masked = to_cuda(logits);
  cpu_->mask_rows(masked, flags);
  gpu_->mask_rows(device_masked, flags);
  std::vector<int32_t> expected_chosen(static_cast<size_t>(tokens * k)), actual_chosen(expected_chosen.size());
  Tensor expected_values({tokens, k}), actual_values({tokens, k}, Device::cuda);
  cpu_->top_k_rows(masked, static_cast<int>(k), expected_chosen, expected_values);
  gpu_->top_k_rows(device_masked, static_cast<int>(k), actual_chosen, actual_values);
  ASSERT_EQ(actual_chosen, expected_chosen);
  for (size_t i = 0; i < expected_chosen.size(); ++i) {
    ASSERT_TRUE(flags[i / k * experts + static_cast<size_t>(expected_chosen[i])]) << "a disallowed expert was chosen";
  }
  for (const auto rule : {Backend::TopKGate::probabilities, Backend::TopKGate::renormalised_probabilities,
                          Backend::TopKGate::softmax_of_chosen_logits}) {
    Tensor expected({tokens, k}), actual({tokens, k}, Device::cuda);
    cpu_->top_k_gates(logits, probabilities, expected_chosen, rule, expected);
    gpu_->top_k_gates(device_logits, device_probabilities, actual_chosen, rule, actual);
    EXPECT_TRUE(close_to(actual, expected, 1e-6)) << "rule " << static_cast<int>(rule);
    if (rule != Backend::TopKGate::probabilities) {
      const std::vector<float> gates = actual.to_vector();
      for (int64_t token = 0; token < tokens; ++token) {
        float total = 0.0f;
        for (int64_t s = 0; s < k; ++s) total += gates[static_cast<size_t>(token * k + s)];
        EXPECT_NEAR(total, 1.0f, 1e-6f) << "token " << token << " rule " << static_cast<int>(rule);
      }
    }
  }
  // The plain rule's gates are the probabilities themselves, bit for bit.
  Tensor plain({tokens, k}, Device::cuda);
  gpu_->top_k_gates(device_logits, device_probabilities, actual_chosen, Backend::TopKGate::probabilities, plain);
  const std::vector<float> gates = plain.to_vector(), p = probabilities.to_vector();
  for (size_t i = 0; i < gates.size(); ++i) {
    EXPECT_EQ(gates[i], p[i / k * experts + static_cast<size_t>(actual_chosen[i])]) << i;
  }
}

TEST_F(CudaMaskedRouting, TopKGatesRefuseIdsOutsideTheRow) {
  const Tensor logits = to_cuda(random_tensor({2, 4}, 23));
  Tensor gates({2, 2}, Device::cuda);
  const std::vector<int32_t> chosen = {0, 1, 2, 4};
  EXPECT_THROW(gpu_->top_k_gates(logits, logits, chosen, Backend::TopKGate::probabilities, gates), std::exception);
}

TEST_F(CudaMaskedRouting, LogitComparisonMatchesCpu) {
  const int64_t rows = 53, vocabulary = 1000;  // wider than a block, not a multiple of it
  const Tensor teacher = random_tensor({rows, vocabulary}, 24, 3.0f), student = random_tensor({rows, vocabulary}, 25, 3.0f);
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int32_t>((i * 37) % vocabulary);
  const auto count = static_cast<size_t>(rows);
  std::vector<double> expected_ratio(count), expected_kl(count), actual_ratio(count), actual_kl(count);
  std::vector<int32_t> expected_teacher(count), expected_student(count), actual_teacher(count), actual_student(count);
  cpu_->compare_logits(teacher, student, targets, {expected_ratio, expected_kl, expected_teacher, expected_student});
  gpu_->compare_logits(to_cuda(teacher), to_cuda(student), targets, {actual_ratio, actual_kl, actual_teacher, actual_student});
  for (size_t i = 0; i < count; ++i) {
    EXPECT_NEAR(actual_ratio[i], expected_ratio[i], 1e-9 * (1 + std::fabs(expected_ratio[i]))) << "row " << i;
    EXPECT_NEAR(actual_kl[i], expected_kl[i], 1e-9 * (1 + expected_kl[i])) << "row " << i;
  }
  EXPECT_EQ(actual_teacher, expected_teacher);
  EXPECT_EQ(actual_student, expected_student);
}

TEST_F(CudaMaskedRouting, LogitComparisonTiesGoToTheLowerIndexAsOnTheCpu) {
  std::vector<float> values(2 * 300, 0.5f);
  values[7] = values[250] = 2.0f;        // row 0: a tie at the top
  values[300 + 299] = 3.0f;              // row 1: the last element
  const Tensor logits = Tensor::from_vector({2, 300}, values);
  const std::vector<int32_t> targets = {7, 0};
  std::vector<double> ratio(2), kl(2);
  std::vector<int32_t> teacher_top(2), student_top(2);
  gpu_->compare_logits(to_cuda(logits), to_cuda(logits), targets, {ratio, kl, teacher_top, student_top});
  EXPECT_EQ(teacher_top, (std::vector<int32_t>{7, 299}));
  EXPECT_EQ(student_top, teacher_top);
  EXPECT_NEAR(kl[0], 0.0, 1e-12);
  EXPECT_NEAR(ratio[1], 0.0, 1e-12);
}

}  // namespace
}  // namespace temoe
