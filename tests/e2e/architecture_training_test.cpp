// temoe train and temoe eval end to end on the tiny preset of each newer architecture under
// mpirun -np 2 (expert-parallel over both ranks): gpt-oss (dequantised and MXFP4 experts),
// Qwen2-MoE and Qwen3-MoE. The run must finish, write its controller and metrics, and the eval
// must report the teacher against itself exactly (KL 0) beside the controller. (Retention is not
// checked: a random model's teacher may get no next token of a small batch right.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::kBinary;
using testing::kMpirun;
using testing::run_shell_command;
using testing::shell_quote;

struct ArchitectureCase {
  const char* arch;
  const char* dtype;
};

class ArchitectureTraining : public ::testing::TestWithParam<ArchitectureCase> {};

TEST_P(ArchitectureTraining, TrainAndEvalUnderMpirunOnTwoRanks) {
  const std::string name = std::string(GetParam().arch) + "-" + GetParam().dtype;
  const fs::path work = fs::temp_directory_path() / ("temoe-e2e-arch-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  for (const std::string& command :
       {kBinary + " make-data --out " + shell_quote(work / "data.h5") + " --seed 1 --data.documents=30",
        kBinary + " make-data --out " + shell_quote(work / "eval.h5") + " --seed 2 --data.documents=10",
        kBinary + " init-model --arch " + GetParam().arch + " --preset tiny --dtype " + GetParam().dtype + " --seed 3 --out " +
            shell_quote(work / "model")}) {
    const auto result = run_shell_command(command);
    ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  }
  const std::string common = " --model " + shell_quote(work / "model") + " --data.path=" + shell_quote(work / "data.h5") +
                             " --run-dir " + shell_quote(work / "run") +
                             " --controller.k_hat=4 --train.sequence_length=32 --train.batch_size=4 --parallel.ep_size=2";
  const auto trained = run_shell_command(kMpirun + " -np 2 " + kBinary + " train" + common +
                                             " --train.steps=3 --train.log_every=1000",
                                         std::chrono::seconds(300));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_TRUE(fs::exists(work / "run" / "controller.h5"));
  std::ifstream metrics(work / "run" / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto step = nlohmann::json::parse(line);
    EXPECT_TRUE(step.contains("switch_rate") && step.contains("kl")) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 3);
  const auto evaluated = run_shell_command(kMpirun + " -np 2 " + kBinary + " eval" + common + " --data.eval_path=" +
                                               shell_quote(work / "eval.h5") + " --eval.batches=1 --json " +
                                               shell_quote(work / "eval.json"),
                                           std::chrono::seconds(300));
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  const auto report = nlohmann::json::parse(std::ifstream(work / "eval.json"));
  // The teacher against itself is exact; its switch rate is plain top-k's (random weights switch a lot).
  EXPECT_EQ(report["baselines"]["topk"]["kl"].get<double>(), 0.0);
  EXPECT_GT(report["baselines"]["topk"]["switch_rate"].get<double>(), 0.1);
  EXPECT_GE(report["kl"].get<double>(), 0.0);
  EXPECT_EQ(report["baselines"]["fixed"]["switch_rate"].get<double>(), 0.0);
  fs::remove_all(work);
}

// temoe inspect on gpt-oss-20b's config.json alone: the published totals and every ep size's share.
TEST(ArchitectureInspect, GptOss20bConfigAlonePrintsBytesPerRankForEveryEp) {
  const fs::path json = fs::temp_directory_path() / ("temoe-e2e-inspect-" + std::to_string(::getpid()) + ".json");
  const auto result = run_shell_command(kBinary + " inspect " +
                                        shell_quote(std::string(TEMOE_SOURCE_DIR) + "/tests/fixtures/gpt_oss_20b_config/config.json") +
                                        " --ep 8 --json " + shell_quote(json));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("no weights (config.json only)"), std::string::npos) << result.output;
  const auto report = nlohmann::json::parse(std::ifstream(json));
  fs::remove(json);
  EXPECT_EQ(report["parameters_total"].get<int64_t>(), 20914757184);
  EXPECT_EQ(report["parameters_active_without_embedding"].get<int64_t>(), 3608307264);
  ASSERT_EQ(report["per_ep"].size(), 4u);  // ep 1, 2, 4, 8 divide 32 experts
  int64_t previous = std::numeric_limits<int64_t>::max();
  for (const auto& row : report["per_ep"]) {
    EXPECT_LT(row["bytes_per_rank"].get<int64_t>(), previous) << row.dump();
    // MXFP4 experts and BF16 for the rest: under 2 bytes per parameter (fp32 resident is 4).
    EXPECT_LT(row["mxfp4_stored_bytes_per_rank"].get<int64_t>(), row["bytes_per_rank"].get<int64_t>() / 2) << row.dump();
    previous = row["bytes_per_rank"].get<int64_t>();
  }
  EXPECT_EQ(report["per_ep"][3]["experts_per_rank"].get<int64_t>(), 4);
}

INSTANTIATE_TEST_SUITE_P(TinyPresets, ArchitectureTraining,
                         ::testing::Values(ArchitectureCase{"gpt-oss", "F32"}, ArchitectureCase{"gpt-oss", "MXFP4"},
                                           ArchitectureCase{"qwen2-moe", "BF16"}, ArchitectureCase{"qwen3-moe", "F32"}),
                         [](const auto& test_case) {
                           std::string text = std::string(test_case.param.arch) + "_" + test_case.param.dtype;
                           for (char& c : text) c = c == '-' ? '_' : c;
                           return text;
                         });

}  // namespace
}  // namespace temoe
