#pragma once
// Shared by the checkpoint tests: a scratch directory per test, a small checkpoint with every kind
// of content (two parameter sets, one without optimizer, a rank-0 and an empty tensor, three
// ranks), a bit-exact comparison, and byte-level damage.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "optim/adamw.hpp"
#include "src/checkpoint/checkpoint.hpp"

namespace temoe::checkpoint_testing {

namespace fs = std::filesystem;

class ScratchDirectory : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = fs::path(::testing::TempDir()) /
                 ("temoe_ckpt_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(directory_);
    fs::create_directories(directory_);
  }
  void TearDown() override {
    std::error_code ignored;
    if (!HasFailure()) fs::remove_all(directory_, ignored);
  }
  fs::path path(const std::string& name) const { return directory_ / name; }
  fs::path directory_;
};

// The live state a trainer would hold: a controller with its optimizer after two updates.
struct LiveState {
  ParameterSet controller;
  std::unique_ptr<AdamW> optimizer;
  ParameterSet critic;  // checkpointed without optimizer state
};

inline void fill(Tensor& tensor, float start, float stride) {
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = start + stride * static_cast<float>(i);
}

inline void make_gradients(ParameterSet& parameters, float scale) {
  for (auto& parameter : parameters.parameters()) {
    for (int64_t i = 0; i < parameter.gradient.numel(); ++i) {
      parameter.gradient.data()[i] = scale * std::sin(static_cast<float>(i) + parameter.value.data()[i]);
    }
  }
}

inline std::unique_ptr<LiveState> make_live_state() {
  auto state = std::make_unique<LiveState>();
  fill(state->controller.add("layer0.termination.w1", {3, 4}).value, 0.1f, 0.01f);
  fill(state->controller.add("layer0.termination.b1", {4}).value, -0.2f, 0.05f);
  fill(state->controller.add("temperature", {}).value, 1.5f, 0.0f);
  state->controller.add("unused", {0, 3});
  fill(state->controller.add("layer1.selection.w", {2, 3, 2}).value, 0.3f, -0.02f);
  AdamWConfig config;
  config.learning_rate = 1e-2;
  state->optimizer = std::make_unique<AdamW>(state->controller, config);
  for (int step = 0; step < 2; ++step) {
    make_gradients(state->controller, 0.5f + static_cast<float>(step));
    state->optimizer->step();
  }
  fill(state->critic.add("value_head", {5}).value, 2.0f, 0.25f);
  return state;
}

inline ModelIdentity sample_model() { return {"mixtral L2 E4 k2", fingerprint_weights({{"layers.0.w", {4, 8}}})}; }

inline Checkpoint make_sample_checkpoint(const LiveState& state, int64_t step = 42) {
  Checkpoint checkpoint;
  checkpoint.config = "[train]\nsteps = 100\nseed = 7\n\n[controller]\neta = 0.02\n";
  checkpoint.model = sample_model();
  checkpoint.step = step;
  checkpoint.tokens = step * 1000 + 17;
  checkpoint.parameter_sets.push_back(capture_parameter_set("controller", state.controller, state.optimizer.get()));
  checkpoint.parameter_sets.push_back(capture_parameter_set("critic", state.critic, nullptr));
  for (uint64_t rank = 0; rank < 3; ++rank) {
    checkpoint.ranks.push_back({{rank * 11 + 1, ~rank, 0x123456789abcdef0ull}, {static_cast<int64_t>(rank) * 100, -1}});
  }
  checkpoint.metrics = R"({"reward_ema": -0.125, "switch_rate": [0.5, 0.25]})";
  return checkpoint;
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<size_t>(a.numel()) * 4) == 0;
}

inline void expect_same_checkpoint(const Checkpoint& actual, const Checkpoint& expected) {
  EXPECT_EQ(actual.format_version, expected.format_version);
  EXPECT_EQ(actual.config, expected.config);
  EXPECT_EQ(actual.model, expected.model);
  EXPECT_EQ(actual.step, expected.step);
  EXPECT_EQ(actual.tokens, expected.tokens);
  EXPECT_EQ(actual.ranks, expected.ranks);
  EXPECT_EQ(actual.metrics, expected.metrics);
  EXPECT_EQ(actual.expert_placement, expected.expert_placement);
  ASSERT_EQ(actual.parameter_sets.size(), expected.parameter_sets.size());
  for (size_t s = 0; s < actual.parameter_sets.size(); ++s) {
    const auto& a = actual.parameter_sets[s];
    const auto& e = expected.parameter_sets[s];
    EXPECT_EQ(a.name, e.name);
    EXPECT_EQ(a.parameter_names, e.parameter_names);
    EXPECT_EQ(a.has_optimizer, e.has_optimizer);
    EXPECT_EQ(a.optimizer_step, e.optimizer_step);
    ASSERT_EQ(a.values.size(), e.values.size());
    ASSERT_EQ(a.first_moments.size(), e.first_moments.size());
    ASSERT_EQ(a.second_moments.size(), e.second_moments.size());
    for (size_t i = 0; i < a.values.size(); ++i) EXPECT_TRUE(same_bits(a.values[i], e.values[i])) << e.parameter_names[i];
    for (size_t i = 0; i < a.first_moments.size(); ++i) {
      EXPECT_TRUE(same_bits(a.first_moments[i], e.first_moments[i])) << e.parameter_names[i];
      EXPECT_TRUE(same_bits(a.second_moments[i], e.second_moments[i])) << e.parameter_names[i];
    }
  }
}

inline std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(stream), {});
}

inline void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace temoe::checkpoint_testing
