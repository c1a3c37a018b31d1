// The option-critic learner's per-position importance weights (sampled rollouts): weights of 1
// change no bit of the gradients or losses, and a weight c on every position scales every loss term
// and gradient by c while the termination probability it reports stays put.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_trainer.hpp"
#include "src/learner/distillation_reward.hpp"
#include "tests/support/in_memory_model.hpp"

namespace temoe {
namespace {

// A world of one process: sums are the values themselves.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend_name() const override { return "single process"; }
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  void all_reduce_max(std::span<int64_t>) override {}
  void all_to_all_v(std::span<const std::byte>, std::span<const size_t>, std::span<const size_t>, std::span<std::byte>,
                    std::span<const size_t>, std::span<const size_t>) override { unused(); }
  void all_to_all(std::span<const std::byte>, std::span<std::byte>, size_t) override { unused(); }
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
  void send(std::span<const std::byte>, int, int) override { unused(); }
  void receive(std::span<std::byte>, int, int) override { unused(); }
  std::vector<std::byte> gather_v(std::span<const std::byte> bytes, int) override { return {bytes.begin(), bytes.end()}; }
  std::unique_ptr<Communicator> split(int, int) override { unused(); }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("the learner test's single-process world has no peers"); }
};

TEST(ImportanceWeightedLearning, UnitWeightsChangeNothingAndAConstantWeightScalesEveryTerm) {
  const auto built = testing::tiny_model(Architecture::mixtral, 8);
  const int64_t batch = 2, time = 12, vocabulary = built->config.vocab_size;
  CounterRandom random(2, {});
  std::vector<int32_t> tokens, targets;
  for (int64_t i = 0; i < batch * time; ++i) {
    tokens.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary)));
    targets.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocabulary)));
  }
  const std::vector<int64_t> ids = {0, 1};
  ParameterSet parameters;
  ControllerConfig config;
  config.k_hat = 4;
  config.termination_bias = -1.0;  // some terminations, so that the selection loss has terms
  auto controllers = make_controllers(parameters, built->config, built->weights, config, 1);
  ControllerPolicy policy(controllers, true, 1);
  const Rollout teacher = run_rollout(*built->model, tokens, batch, time, nullptr, ids, 0);
  const Rollout student = run_rollout(*built->model, tokens, batch, time, &policy, ids, 0);
  const TokenScores scores = score_tokens(teacher.logits, student.logits, targets, RewardKind::log_ratio);
  std::vector<uint8_t> ends(static_cast<size_t>(batch * time), 0);
  ends.back() = 1;  // one sequence ends its document, the other is truncated

  SingleProcess world;
  OptionCriticLearner learner(controllers, world);
  const auto learn = [&](std::span<const double> weights) {
    parameters.zero_gradients();
    auto losses = learner.accumulate_gradients(student, scores.reward, ends, batch, time, weights);
    return std::make_pair(losses, parameters.flatten_gradients());
  };
  const auto [plain_losses, plain] = learn({});
  const std::vector<double> ones(static_cast<size_t>(batch * time), 1.0), twos(ones.size(), 2.0);
  const auto [unit_losses, unit] = learn(ones);
  EXPECT_EQ(unit, plain);
  const auto [double_losses, doubled] = learn(twos);
  double largest = 0;
  for (float g : plain) largest = std::max(largest, double(std::fabs(g)));
  ASSERT_GT(largest, 0.0);
  for (size_t i = 0; i < plain.size(); ++i) ASSERT_NEAR(doubled[i], 2 * plain[i], 1e-6 * largest) << "gradient " << i;
  for (size_t layer = 0; layer < plain_losses.size(); ++layer) {
    EXPECT_EQ(unit_losses[layer].value, plain_losses[layer].value);
    EXPECT_EQ(unit_losses[layer].selection, plain_losses[layer].selection);
    EXPECT_NEAR(double_losses[layer].value, 2 * plain_losses[layer].value, 1e-12);
    EXPECT_NEAR(double_losses[layer].q_value, 2 * plain_losses[layer].q_value, 1e-12);
    EXPECT_NEAR(double_losses[layer].termination, 2 * plain_losses[layer].termination, 1e-12);
    EXPECT_NEAR(double_losses[layer].selection, 2 * plain_losses[layer].selection, 1e-12);
    EXPECT_EQ(double_losses[layer].termination_probability, plain_losses[layer].termination_probability);
    EXPECT_NE(plain_losses[layer].selection, 0.0) << "layer " << layer << " had no selection term";
  }
  EXPECT_THROW(learn(std::span<const double>(ones).first(3)), std::exception);
}

}  // namespace
}  // namespace temoe
