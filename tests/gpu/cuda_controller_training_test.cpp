// Controller training end to end on the GPU against the CPU (issue 19): the same tiny Mixtral
// (top-k renormalisation, routing inside held masks), the same controllers and the same batch,
// trained for a few steps by ControllerTrainer on each backend. The draws are the same
// counter-based streams on both (src/learner/random_streams.hpp), and the controllers read the
// same host copies of the hidden states, so the decisions must be identical step for step; the
// losses, rewards and the trained parameters agree to 1e-4 relative. A sampled rollout (student /
// teacher mixture draws with a KV cache in device memory) must draw the same tokens.
#include <gtest/gtest.h>

#include <cmath>

#include "parallel/mpi_communicator.hpp"
#include "src/core/counter_random.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/sampled_rollout.hpp"
#include "src/learner/student_rollout.hpp"
#include "tests/gpu/device_model.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

constexpr int64_t kBatch = 2, kTime = 24, kSteps = 5;

data::SequenceBatch random_batch(int64_t vocabulary, uint64_t seed) {
  data::SequenceBatch batch;
  batch.batch = kBatch;
  batch.time = kTime;
  CounterRandom random(seed, {});
  std::vector<int32_t> stream(static_cast<size_t>(kBatch * (kTime + 1)));
  for (auto& token : stream) token = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary));
  for (int64_t b = 0; b < kBatch; ++b) {
    for (int64_t t = 0; t < kTime; ++t) {
      batch.tokens.push_back(stream[static_cast<size_t>(b * (kTime + 1) + t)]);
      batch.targets.push_back(stream[static_cast<size_t>(b * (kTime + 1) + t + 1)]);
    }
    batch.global_index.push_back(100 + b);
  }
  batch.document_ends.assign(static_cast<size_t>(kBatch * kTime), 0);
  batch.truncated.assign(batch.document_ends.size(), 0);
  batch.topics.assign(batch.document_ends.size(), -1);
  return batch;
}

TrainerConfig trainer_config(const ModelConfig& model) {
  TrainerConfig config;
  config.controller.k_hat = model.num_experts / 2;
  config.controller.termination_bias = -1.0;  // about 27% switching: the first steps switch often
  config.optimizer.learning_rate = 1e-3;
  config.seed = 17;
  return config;
}

::testing::AssertionResult relatively_close(double actual, double expected, const char* what) {
  if (std::fabs(actual - expected) <= 1e-4 * std::fabs(expected) + 1e-7) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": GPU " << actual << ", CPU " << expected << " (relative difference "
                                       << std::fabs(actual - expected) / std::max(std::fabs(expected), 1e-30) << ")";
}

void expect_same_decisions(const Rollout& gpu, const Rollout& cpu, int64_t step) {
  ASSERT_EQ(gpu.decisions.size(), cpu.decisions.size());
  for (size_t layer = 0; layer < cpu.decisions.size(); ++layer) {
    EXPECT_EQ(gpu.decisions[layer].terminated, cpu.decisions[layer].terminated) << "step " << step << " layer " << layer;
    EXPECT_EQ(gpu.decisions[layer].masks, cpu.decisions[layer].masks) << "step " << step << " layer " << layer;
    EXPECT_EQ(gpu.chosen_experts[layer], cpu.chosen_experts[layer]) << "step " << step << " layer " << layer;
  }
}

class CudaControllerTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    TEMOE_SKIP_WITHOUT_CUDA();
    host_ = testing::tiny_model(Architecture::mixtral, 31, 0.1);
    device_ = std::make_unique<testing::DeviceModel>(*host_);
  }
  MpiCommunicator world_;
  std::unique_ptr<testing::InMemoryModel> host_;
  std::unique_ptr<testing::DeviceModel> device_;
};

TEST_F(CudaControllerTraining, TeacherForcedStepsMakeTheSameDecisionsAndLossesAsTheCpu) {
  const TrainerConfig config = trainer_config(host_->config);
  ControllerTrainer cpu(*host_->model, config, world_), gpu(device_->model, config, world_);
  const data::SequenceBatch batch = random_batch(host_->config.vocab_size, 5);
  int64_t switches = 0;
  for (int64_t step = 0; step < kSteps; ++step) {
    // The rollout each trainer is about to make, with the parameters it holds now.
    ControllerPolicy cpu_policy(cpu.controllers(), true, config.seed), gpu_policy(gpu.controllers(), true, config.seed);
    const Rollout cpu_rollout = run_rollout(*host_->model, batch.tokens, kBatch, kTime, &cpu_policy, batch.global_index, step);
    const Rollout gpu_rollout = run_rollout(device_->model, batch.tokens, kBatch, kTime, &gpu_policy, batch.global_index, step);
    expect_same_decisions(gpu_rollout, cpu_rollout, step);
    for (const LayerDecisions& layer : cpu_rollout.decisions) {
      for (const uint8_t switched : layer.switched) switches += switched;
    }

    const StepMetrics expected = cpu.step(batch, step), actual = gpu.step(batch, step);
    EXPECT_EQ(actual.switch_rate, expected.switch_rate) << "step " << step;
    EXPECT_EQ(actual.teacher_switch_rate, expected.teacher_switch_rate) << "step " << step;
    EXPECT_TRUE(relatively_close(actual.reward, expected.reward, "reward")) << "step " << step;
    EXPECT_TRUE(relatively_close(actual.kl, expected.kl, "KL")) << "step " << step;
    EXPECT_TRUE(relatively_close(actual.gradient_norm, expected.gradient_norm, "gradient norm")) << "step " << step;
    ASSERT_EQ(actual.losses.size(), expected.losses.size());
    for (size_t layer = 0; layer < expected.losses.size(); ++layer) {
      const LayerLosses& a = actual.losses[layer];
      const LayerLosses& e = expected.losses[layer];
      EXPECT_TRUE(relatively_close(a.q_value, e.q_value, "Q loss")) << "step " << step << " layer " << layer;
      EXPECT_TRUE(relatively_close(a.value, e.value, "value loss")) << "step " << step << " layer " << layer;
      EXPECT_TRUE(relatively_close(a.termination, e.termination, "termination loss")) << "step " << step << " layer " << layer;
      EXPECT_TRUE(relatively_close(a.selection, e.selection, "selection loss")) << "step " << step << " layer " << layer;
    }
  }
  EXPECT_GT(switches, 0) << "no switch in " << kSteps << " steps: the comparison of decisions says little";
  const auto& cpu_parameters = cpu.parameters().parameters();
  const auto& gpu_parameters = gpu.parameters().parameters();
  ASSERT_EQ(gpu_parameters.size(), cpu_parameters.size());
  for (size_t i = 0; i < cpu_parameters.size(); ++i) {
    EXPECT_TRUE(testing::close_to(gpu_parameters[i].value, cpu_parameters[i].value, 1e-4)) << cpu_parameters[i].name;
  }
}

TEST_F(CudaControllerTraining, SampledRolloutsDrawTheSameTokensAsTheCpu) {
  const TrainerConfig config = trainer_config(host_->config);
  ParameterSet cpu_parameters, gpu_parameters;
  auto cpu_controllers = make_controllers(cpu_parameters, host_->config, config.controller, config.seed);
  auto gpu_controllers = make_controllers(gpu_parameters, host_->config, config.controller, config.seed);
  ControllerPolicy cpu_policy(cpu_controllers, true, config.seed), gpu_policy(gpu_controllers, true, config.seed);
  const data::SequenceBatch batch = random_batch(host_->config.vocab_size, 6);
  SampledRolloutOptions options;
  options.prompt_length = 8;
  const SampledRollout expected = run_sampled_rollout(*host_->model, cpu_policy, batch, options, config.seed, 3);
  const SampledRollout actual = run_sampled_rollout(device_->model, gpu_policy, batch, options, config.seed, 3);
  EXPECT_EQ(actual.tokens, expected.tokens);
  EXPECT_EQ(actual.targets, expected.targets);
  for (size_t i = 0; i < expected.importance_weights.size(); ++i) {
    EXPECT_TRUE(relatively_close(actual.importance_weights[i], expected.importance_weights[i], "importance weight")) << i;
  }
  expect_same_decisions(actual.student, expected.student, 3);
  EXPECT_EQ(actual.student.logits.device(), Device::cuda);
  EXPECT_TRUE(testing::close_to(actual.student.logits, expected.student.logits, 1e-4));
}

}  // namespace
}  // namespace temoe
