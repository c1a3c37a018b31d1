// temoe train --rollout.mode=sampled end to end on a tiny random model and topic data: it completes
// and logs the mean importance weight; a run is bit-identical to its rerun; 2 ranks (expert-parallel
// on the tiny model's 8 experts) with batch B each match 1 rank with 2B; bad rollout keys are
// refused naming the key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/learner/controller_file.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"
#include "tests/support/numeric_bounds.hpp"
#include "src/model/model_config.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::run_shell_command;
using testing::shell_quote;

using testing::kBinary;
using testing::kMpirun;

class SampledTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = fs::temp_directory_path() / ("temoe-e2e-sampled-" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    for (const std::string& command :
         {kBinary + " make-data --out " + shell_quote(work_ / "data.h5") + " --seed 1 --data.documents=40",
          kBinary + " init-model --arch mixtral --preset tiny --seed 3 --out " + shell_quote(work_ / "model")}) {
      const auto result = run_shell_command(command);
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(work_); }

  static std::string command(const std::string& name, int ranks, const std::string& extra) {
    const std::string program = kBinary + " train --model " + shell_quote(work_ / "model") + " --data.path=" +
                                shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / name) +
                                " --rollout.mode=sampled --rollout.reward=log_ratio --controller.k_hat=4"
                                " --train.sequence_length=24 --train.batch_size=4 --train.learning_rate=3e-3"
                                " --train.log_every=1000 " +
                                extra;
    return ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
  }

  // Trains into work_/name and returns the metrics lines.
  static std::vector<nlohmann::json> train(const std::string& name, int ranks, const std::string& extra) {
    const auto result = run_shell_command(command(name, ranks, "--rollout.prompt_length=8 " + extra), std::chrono::seconds(300));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    std::vector<nlohmann::json> lines;
    std::ifstream stream(work_ / name / "metrics.jsonl");
    for (std::string line; std::getline(stream, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  static std::string file_bytes(const fs::path& path) {
    std::ifstream stream(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(stream), {});
  }

  static fs::path work_;
};

fs::path SampledTraining::work_;

TEST_F(SampledTraining, RunsLogTheImportanceWeightAndRepeatBitForBit) {
  auto first = train("same-a", 1, "--train.steps=3");
  auto second = train("same-b", 1, "--train.steps=3");
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  for (size_t i = 0; i < first.size(); ++i) {
    for (const char* key : {"step", "tokens", "reward", "kl", "switch_rate", "tokens_per_s", "importance_weight_mean"}) {
      EXPECT_TRUE(first[i].contains(key)) << key;
    }
    // p_student / p_mix lies in (0, 1 / 0.8].
    const double weight = first[i]["importance_weight_mean"].get<double>();
    EXPECT_GT(weight, 0.0);
    EXPECT_LE(weight, 1.25);
    EXPECT_EQ(first[i]["tokens"].get<int64_t>(), 4 * 24);
    first[i].erase("tokens_per_s");
    second[i].erase("tokens_per_s");
    EXPECT_EQ(first[i].dump(), second[i].dump()) << "step " << i;
  }
  EXPECT_EQ(file_bytes(work_ / "same-a" / "controller.h5"), file_bytes(work_ / "same-b" / "controller.h5"));
}

TEST_F(SampledTraining, TwoRanksWithBatchBMatchOneRankWithBatch2B) {
  const auto one = train("dp-1", 1, "--train.steps=3");
  const auto two = train("dp-2", 2, "--train.steps=3");
  ASSERT_EQ(one.size(), 3u);
  ASSERT_EQ(two.size(), 3u);
  // The same tokens are drawn and the same masks held (every draw is keyed by the global
  // sequence, not by the rank that holds it), so the switch counts agree exactly (a flip needs a
  // draw within the bound of its threshold: see numeric_bounds.hpp). As in the teacher-forced test,
  // parameters and per-step figures agree to the training reassociation bound: GEMMs see other row
  // counts, and sums over ranks are added in another order. (Adam moves an element whose gradient
  // is below its eps of 1e-8 by lr * g / eps: a relative change of g is still the same relative
  // change of the update, which is what the bound adds up.)
  const auto shape = testing::forward_shape(ModelConfig::from_file(work_ / "model" / "config.json"), 24);
  const int64_t tokens_per_step = 2 * 4 * 24;
  const double parameter_bound = testing::training_reassociation_bound(shape, tokens_per_step, static_cast<int64_t>(one.size()));
  const auto parameters_one = read_controller_values(work_ / "dp-1" / "controller.h5");
  const auto parameters_two = read_controller_values(work_ / "dp-2" / "controller.h5");
  ASSERT_EQ(parameters_one.size(), parameters_two.size());
  for (const auto& [name, values] : parameters_one) {
    const auto& other = parameters_two.at(name);
    ASSERT_EQ(values.size(), other.size()) << name;
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_NEAR(values[i], other[i], parameter_bound * std::max(1.0f, std::fabs(values[i]))) << name << "[" << i << "]";
    }
  }
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i]["switch_rate"].get<double>(), two[i]["switch_rate"].get<double>()) << "step " << i;
    EXPECT_EQ(one[i]["switch_rate_per_layer"], two[i]["switch_rate_per_layer"]) << "step " << i;
    const double bound = testing::figure_after_updates_bound(shape, tokens_per_step, static_cast<int64_t>(i));
    for (const char* key : {"reward", "kl", "gradient_norm", "importance_weight_mean"}) {
      const double a = one[i][key].get<double>(), b = two[i][key].get<double>();
      EXPECT_NEAR(a, b, bound * std::max(1.0, std::fabs(a))) << key << " at step " << i;
    }
  }
}

TEST_F(SampledTraining, RefusesAPromptLongerThanTheSequenceAndABadTeacherShare) {
  for (const auto& [extra, key] : {std::pair<std::string, std::string>{"--rollout.prompt_length=25", "rollout.prompt_length = 25"},
                                   {"--rollout.teacher_mix=1", "rollout.teacher_mix = 1"}}) {
    const auto result = run_shell_command(command("refused", 1, "--train.steps=1 " + extra));
    EXPECT_NE(result.exit_code, 0) << extra;
    EXPECT_NE(result.output.find(key), std::string::npos) << result.output;
  }
}

}  // namespace
}  // namespace temoe
