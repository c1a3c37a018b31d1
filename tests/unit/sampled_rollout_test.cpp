// Sampled rollouts on a tiny in-memory model: the draws are the same however the batch is sliced
// and from run to run; what is recorded is a teacher-forced rollout of the drawn tokens; prompts
// come from the data; every drawn target carries p_student / p_mix of the recorded logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/sampled_rollout.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe {
namespace {

using testing::tiny_model;

constexpr int64_t kTime = 14;
constexpr uint64_t kSeed = 4;
constexpr int64_t kStep = 3;

// Sequences with the given global indices; sequence g's tokens depend on g alone.
data::SequenceBatch batch_of(const std::vector<int64_t>& ids, int64_t vocabulary) {
  data::SequenceBatch batch;
  batch.batch = static_cast<int64_t>(ids.size());
  batch.time = kTime;
  batch.global_index = ids;
  for (int64_t id : ids) {
    CounterRandom random(99, {static_cast<uint64_t>(id)});
    std::vector<int32_t> stream;
    for (int64_t t = 0; t <= kTime; ++t) stream.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary)));
    batch.tokens.insert(batch.tokens.end(), stream.begin(), stream.end() - 1);
    batch.targets.insert(batch.targets.end(), stream.begin() + 1, stream.end());
  }
  batch.document_ends.assign(batch.tokens.size(), 0);
  batch.truncated.assign(batch.tokens.size(), 0);
  return batch;
}

class SampledRolloutTest : public ::testing::Test {
 protected:
  SampledRolloutTest() : built_(tiny_model(Architecture::mixtral, 21)) {
    ControllerConfig config;
    config.k_hat = 4;
    config.termination_bias = -1.0;  // switch now and then, so that held masks change during generation
    controllers_ = make_controllers(parameters_, built_->config, config, kSeed);
  }

  SampledRollout sample(const std::vector<int64_t>& ids, SampledRolloutOptions options = {6, 0.2}) {
    ControllerPolicy policy(controllers_, /*sample=*/true, kSeed);
    return run_sampled_rollout(*built_->model, policy, batch_of(ids, built_->config.vocab_size), options, kSeed, kStep);
  }

  std::unique_ptr<testing::InMemoryModel> built_;
  ParameterSet parameters_;
  std::vector<OptionController> controllers_;
};

double relative_difference(const Tensor& a, const Tensor& b) {
  double difference = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    difference = std::max(difference, std::fabs(double(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::fabs(double(a.data()[i])));
  }
  return difference / scale;
}

TEST_F(SampledRolloutTest, DrawsAreKeyedBySequenceNotByBatchSlot) {
  const SampledRollout whole = sample({10, 11, 12, 13});
  const SampledRollout again = sample({10, 11, 12, 13});
  EXPECT_EQ(whole.tokens, again.tokens);
  EXPECT_EQ(whole.importance_weights, again.importance_weights);
  EXPECT_EQ(whole.student.logits.to_vector(), again.student.logits.to_vector());
  // The same sequences in two halves, and in another order: the same tokens for each sequence.
  const SampledRollout first = sample({10, 11}), second = sample({13, 12});
  const auto row = [](const std::vector<int32_t>& tokens, int64_t b) {
    return std::vector<int32_t>(tokens.begin() + b * kTime, tokens.begin() + (b + 1) * kTime);
  };
  EXPECT_EQ(row(first.tokens, 0), row(whole.tokens, 0));
  EXPECT_EQ(row(first.tokens, 1), row(whole.tokens, 1));
  EXPECT_EQ(row(second.tokens, 1), row(whole.tokens, 2));
  EXPECT_EQ(row(second.tokens, 0), row(whole.tokens, 3));
  EXPECT_EQ(row(first.targets, 1), row(whole.targets, 1));
  for (int64_t t = 0; t < kTime; ++t) {
    EXPECT_NEAR(second.importance_weights[static_cast<size_t>(t)], whole.importance_weights[static_cast<size_t>(3 * kTime + t)], 1e-5);
  }
  // A different step draws different continuations.
  ControllerPolicy policy(controllers_, true, kSeed);
  const SampledRollout later = run_sampled_rollout(*built_->model, policy, batch_of({10, 11, 12, 13}, built_->config.vocab_size),
                                                   {6, 0.2}, kSeed, kStep + 1);
  EXPECT_NE(later.tokens, whole.tokens);
}

TEST_F(SampledRolloutTest, TheRecordIsATeacherForcedRolloutOfTheDrawnTokens) {
  const std::vector<int64_t> ids = {5, 6, 7};
  const SampledRollout sampled = sample(ids);
  const int64_t batch = 3;
  ControllerPolicy policy(controllers_, true, kSeed);
  const Rollout student = run_rollout(*built_->model, sampled.tokens, batch, kTime, &policy, ids, kStep);
  const Rollout teacher = run_rollout(*built_->model, sampled.tokens, batch, kTime, nullptr, ids, kStep);
  EXPECT_LT(relative_difference(student.logits, sampled.student.logits), 1e-5);
  EXPECT_LT(relative_difference(teacher.logits, sampled.teacher.logits), 1e-5);
  int64_t switches = 0;
  for (int64_t layer = 0; layer < built_->config.num_layers; ++layer) {
    const auto l = static_cast<size_t>(layer);
    EXPECT_LT(relative_difference(student.hidden[l], sampled.student.hidden[l]), 1e-5) << "layer " << layer;
    EXPECT_LT(relative_difference(student.router_logits[l], sampled.student.router_logits[l]), 1e-5) << "layer " << layer;
    // The controllers' draws are keyed by position: the same decisions as one scan of the tokens.
    EXPECT_EQ(student.decisions[l].masks, sampled.student.decisions[l].masks) << "layer " << layer;
    EXPECT_EQ(student.decisions[l].previous_masks, sampled.student.decisions[l].previous_masks) << "layer " << layer;
    EXPECT_EQ(student.decisions[l].terminated, sampled.student.decisions[l].terminated) << "layer " << layer;
    EXPECT_EQ(student.decisions[l].switched, sampled.student.decisions[l].switched) << "layer " << layer;
    EXPECT_EQ(student.decisions[l].selected_tuples, sampled.student.decisions[l].selected_tuples) << "layer " << layer;
    EXPECT_EQ(student.chosen_experts[l], sampled.student.chosen_experts[l]) << "layer " << layer;
    EXPECT_EQ(teacher.chosen_experts[l], sampled.teacher.chosen_experts[l]) << "layer " << layer;
    for (uint8_t s : sampled.student.decisions[l].switched) switches += s;
  }
  EXPECT_GT(switches, 0) << "the controllers never switched: the test does not exercise held masks";
}

TEST_F(SampledRolloutTest, PromptsComeFromTheDataAndDrawnTargetsCarryTheirWeights) {
  const std::vector<int64_t> ids = {1, 2};
  const int64_t prompt = 6;
  const double mix = 0.3;
  const SampledRollout sampled = sample(ids, {prompt, mix});
  const data::SequenceBatch data = batch_of(ids, built_->config.vocab_size);
  const int64_t vocabulary = built_->config.vocab_size;
  int64_t differs_from_data = 0;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < kTime; ++t) {
      const auto i = static_cast<size_t>(b * kTime + t);
      if (t < prompt) EXPECT_EQ(sampled.tokens[i], data.tokens[i]) << b << ", " << t;
      else EXPECT_EQ(sampled.tokens[i], sampled.targets[i - 1]) << b << ", " << t;  // inputs are the drawn targets
      if (t < prompt - 1) {
        EXPECT_EQ(sampled.targets[i], data.targets[i]);
        EXPECT_EQ(sampled.generated[i], 0);
        EXPECT_EQ(sampled.importance_weights[i], 1.0);
        continue;
      }
      differs_from_data += sampled.targets[i] != data.targets[i];
      EXPECT_EQ(sampled.generated[i], 1);
      // p_student / p_mix of the drawn token, from the recorded logits.
      const auto probability = [&](const Tensor& logits) {
        const float* row = logits.data() + static_cast<int64_t>(i) * vocabulary;
        const double maximum = *std::max_element(row, row + vocabulary);
        double total = 0;
        for (int64_t v = 0; v < vocabulary; ++v) total += std::exp(double(row[v]) - maximum);
        return std::exp(double(row[sampled.targets[i]]) - maximum) / total;
      };
      const double p_student = probability(sampled.student.logits), p_teacher = probability(sampled.teacher.logits);
      EXPECT_NEAR(sampled.importance_weights[i], p_student / ((1 - mix) * p_student + mix * p_teacher), 1e-12);
      EXPECT_GT(sampled.importance_weights[i], 0.0);
      EXPECT_LE(sampled.importance_weights[i], 1 / (1 - mix) + 1e-12);
    }
  }
  EXPECT_GT(differs_from_data, 0);
}

TEST_F(SampledRolloutTest, APromptOfTheWholeSequenceDrawsOnlyTheLastTarget) {
  const SampledRollout sampled = sample({3}, {kTime, 0.2});
  const data::SequenceBatch data = batch_of({3}, built_->config.vocab_size);
  EXPECT_EQ(sampled.tokens, data.tokens);
  EXPECT_TRUE(std::equal(data.targets.begin(), data.targets.end() - 1, sampled.targets.begin()));
  EXPECT_EQ(std::count(sampled.generated.begin(), sampled.generated.end(), 1), 1);
  EXPECT_EQ(sampled.generated.back(), 1);
}

TEST_F(SampledRolloutTest, RefusesPromptsThatDoNotFitAndABadTeacherShare) {
  EXPECT_THROW(sample({1}, {0, 0.2}), std::exception);
  EXPECT_THROW(sample({1}, {kTime + 1, 0.2}), std::exception);
  EXPECT_THROW(sample({1}, {4, 1.0}), std::exception);
}

}  // namespace
}  // namespace temoe
