// `mpirun -np N temoe forward` end to end: the .npy rank 0 writes matches the single-rank run for
// 1, 2 and 4 ranks and every valid ep size (with ranks that own no sequences), memory per rank
// falls with the ep size, a fault on one rank ends the whole job with that rank named, and bad
// layouts are refused with a clear message; a permuted expert placement leaves the logits unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/io/npy_file.hpp"
#include "src/model/model_presets.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"
#include "tests/support/numeric_bounds.hpp"
#include "src/model/model_config.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::run_shell_command;
using testing::shell_quote;

const fs::path kFixtures = TEMOE_FIXTURE_DIR;
using testing::kBinary;
using testing::kMpirun;

fs::path scratch_directory(const std::string& name) {
  const fs::path directory = fs::temp_directory_path() / ("temoe-e2e-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(directory);
  fs::create_directories(directory);
  return directory;
}

std::string forward_command(int ranks, const fs::path& model, const fs::path& tokens, const fs::path& out,
                            const std::string& extra = "") {
  const std::string program = kBinary + " forward --model " + shell_quote(model) + " --tokens " + shell_quote(tokens) +
                              " --out " + shell_quote(out) + " " + extra;
  return ranks == 0 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
}

double max_relative_difference(const Tensor& a, const Tensor& b) {
  double difference = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    difference = std::max(difference, std::fabs(double(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::fabs(double(b.data()[i])));
  }
  return difference / scale;
}

// Logits written by another world size or placement come from GEMMs of other row counts, which the
// BLAS may sum in another order: they agree to the model's forward reassociation bound
// (numeric_bounds.hpp), relative to the largest |logit|, not bit for bit.
double forward_bound(const fs::path& model, const Tensor& logits) {
  return testing::forward_reassociation_bound(
      testing::forward_shape(ModelConfig::from_file(model / "config.json"), logits.shape()[1]));
}

class ForwardAcrossWorldSizes : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardAcrossWorldSizes, RankZeroWritesTheSingleRankLogits) {
  const fs::path model = kFixtures / GetParam();
  const fs::path work = scratch_directory("forward-" + GetParam());
  const auto single = run_shell_command(forward_command(0, model, model / "tokens.npy", work / "single.npy"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const Tensor reference = read_float_npy(work / "single.npy");
  const int64_t experts = nlohmann::json::parse(std::ifstream(model / "config.json")).value("num_local_experts",
      nlohmann::json::parse(std::ifstream(model / "config.json")).value("num_experts", 0));
  int runs = 0;
  for (int ranks : {2, 4}) {
    for (int ep : {1, 2, 4}) {
      if (ep > ranks || ranks % ep || experts % ep) continue;
      const fs::path out = work / ("np" + std::to_string(ranks) + "-ep" + std::to_string(ep) + ".npy");
      // The fixtures hold 2 sequences, so with 4 ranks two of them own none and only serve experts.
      const auto run = run_shell_command(forward_command(ranks, model, model / "tokens.npy", out,
                                                         "--parallel.ep_size=" + std::to_string(ep)));
      ASSERT_EQ(run.exit_code, 0) << run.output;
      const Tensor logits = read_float_npy(out);
      ASSERT_EQ(logits.shape(), reference.shape());
      EXPECT_LE(max_relative_difference(logits, reference), forward_bound(model, reference)) << ranks << " ranks, ep " << ep;
      ++runs;
    }
  }
  EXPECT_GE(runs, 3);
  fs::remove_all(work);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ForwardAcrossWorldSizes, ::testing::Values("mixtral_f32", "olmoe_f32_sharded"));

TEST(ExpertParallelMemory, PeakResidentMemoryPerRankFallsFromEp1ToEp4) {
  // A model whose experts dominate: 4 layers x 8 experts x 3 x 256 x 1024 floats = 96 MiB of
  // experts, under 1 MiB of everything else.
  ModelConfig config = model_preset(Architecture::mixtral, "tiny");
  config.hidden_size = 256;
  config.head_dim = 64;
  config.num_heads = 4;
  config.num_kv_heads = 4;
  config.num_layers = 4;
  config.expert_ffn_size = 1024;
  config.vocab_size = 64;
  const fs::path work = scratch_directory("memory");
  write_random_model(config, 3, work / "model", DType::f32, 1);
  write_token_npy(work / "tokens.npy", TokenArray{{4, 16}, std::vector<int32_t>(64, 5)});
  const int64_t expert_bytes = config.num_layers * config.num_experts * config.parameters_per_expert() * 4;

  nlohmann::json reports[2];
  for (int i = 0; i < 2; ++i) {
    const int ep = i == 0 ? 1 : 4;
    const fs::path json = work / ("ep" + std::to_string(ep) + ".json");
    const auto run = run_shell_command(forward_command(4, work / "model", work / "tokens.npy", work / "out.npy",
                                                       "--parallel.ep_size=" + std::to_string(ep) + " --json " +
                                                           shell_quote(json)));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    reports[i] = nlohmann::json::parse(std::ifstream(json));
    ASSERT_EQ(reports[i]["ep_size"], ep);
  }
  const int64_t dense_bytes = (config.parameters_total() - config.num_layers * config.num_experts * config.parameters_per_expert()) * 4;
  for (int r = 0; r < 4; ++r) {
    // Slice loading: each rank read exactly the dense tensors plus its share of the experts.
    EXPECT_EQ(reports[0]["weight_bytes_read_per_rank"][r].get<int64_t>(), dense_bytes + expert_bytes);
    EXPECT_EQ(reports[1]["weight_bytes_read_per_rank"][r].get<int64_t>(), dense_bytes + expert_bytes / 4);
    const auto peak_ep1 = reports[0]["peak_resident_bytes_per_rank"][r].get<int64_t>();
    const auto peak_ep4 = reports[1]["peak_resident_bytes_per_rank"][r].get<int64_t>();
    // The 3/4 of the experts a rank no longer holds must show in its peak (with slack for noise).
    EXPECT_LT(peak_ep4, peak_ep1 - expert_bytes / 2) << "rank " << r << ": " << peak_ep1 << " -> " << peak_ep4;
    std::printf("rank %d: peak resident %.1f MiB at ep 1, %.1f MiB at ep 4\n", r, static_cast<double>(peak_ep1) / 1048576.0,
                static_cast<double>(peak_ep4) / 1048576.0);
  }
  fs::remove_all(work);
}

TEST(ExpertParallelFaults, AnExceptionOnOneRankEndsTheJobNamingIt) {
  const fs::path model = kFixtures / "mixtral_f32";
  const fs::path work = scratch_directory("fault");
  const auto run = run_shell_command("TEMOE_FAULT_INJECTION=2:1 " +
                                         forward_command(4, model, model / "tokens.npy", work / "out.npy",
                                                         "--parallel.ep_size=4"),
                                     std::chrono::seconds(60));
  EXPECT_FALSE(run.timed_out) << "the job hung after a rank failed:\n" << run.output;
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("error on rank 2"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("injected fault at MoE layer 1"), std::string::npos) << run.output;
  EXPECT_LT(run.seconds, 30.0);
  EXPECT_FALSE(fs::exists(work / "out.npy"));
  fs::remove_all(work);
}

struct BadLayout {
  int ranks;
  int ep;
  const char* message;
};

// A placement is a permutation of experts over ranks applied at load time: the logits do not change.
TEST(ExpertPlacementForward, PermutedPlacementsGiveTheSingleRankLogits) {
  const fs::path model = kFixtures / "mixtral_f32";  // 4 experts
  const fs::path work = scratch_directory("placement");
  const auto single = run_shell_command(forward_command(0, model, model / "tokens.npy", work / "single.npy"));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const Tensor reference = read_float_npy(work / "single.npy");
  struct Case {
    int ranks;
    std::string owners;
  };
  for (const Case& placement : {Case{2, "[1, 0, 0, 1]"}, Case{4, "[3, 1, 0, 2]"}}) {
    const fs::path file = work / ("placement-" + std::to_string(placement.ranks) + ".json");
    std::ofstream(file) << R"({"ep_size": )" << placement.ranks << R"(, "owners": )" << placement.owners << "}";
    const fs::path out = work / ("np" + std::to_string(placement.ranks) + ".npy");
    const auto run = run_shell_command(forward_command(placement.ranks, model, model / "tokens.npy", out,
                                                       "--parallel.ep_size=" + std::to_string(placement.ranks) +
                                                           " --parallel.placement=" + shell_quote(file)));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_LE(max_relative_difference(read_float_npy(out), reference), forward_bound(model, reference)) << placement.owners;
  }
  // A file for another layout, or an uneven one, is refused naming the file and the key.
  const fs::path wrong = work / "wrong.json";
  for (const auto& [text, message] : {std::pair<std::string, std::string>{R"({"ep_size": 4, "owners": [0, 1, 2, 3]})",
                                                                          "key ep_size is 4 but this run has 2"},
                                      {R"({"ep_size": 2, "owners": [0, 0, 0, 1]})", "rank 0 3 experts"},
                                      {R"({"ep_size": 2, "owners": [0, 1]})", "key owners lists 2 experts"}}) {
    std::ofstream(wrong) << text;
    const auto run = run_shell_command(forward_command(2, model, model / "tokens.npy", work / "bad.npy",
                                                       "--parallel.ep_size=2 --parallel.placement=" + shell_quote(wrong)),
                                       std::chrono::seconds(60));
    EXPECT_NE(run.exit_code, 0) << text;
    EXPECT_NE(run.output.find(message), std::string::npos) << run.output;
    EXPECT_NE(run.output.find("wrong.json"), std::string::npos) << run.output;
    EXPECT_FALSE(fs::exists(work / "bad.npy"));
  }
  fs::remove_all(work);
}

// temoe place measures co-selection on data and writes a placement that loads: within the load
// bound, no worse than contiguous blocks on its own measure, and the forward's logits unchanged.
TEST(ExpertPlacementForward, PlaceWritesABalancedPlacementThatLoads) {
  const fs::path work = scratch_directory("place");
  const std::string model = shell_quote(std::string(TEMOE_SOURCE_DIR) + "/configs/testbed/model");
  auto run = run_shell_command(kBinary + " make-data --out " + shell_quote(work / "data.h5") + " --data.documents=40");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  run = run_shell_command(kBinary + " place --model.dir=" + model + " --data.path=" + shell_quote(work / "data.h5") +
                          " --ep-size 4 --place.batches=2 --out " + shell_quote(work / "placement.json") + " --json " +
                          shell_quote(work / "report.json"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto report = nlohmann::json::parse(std::ifstream(work / "report.json"));
  EXPECT_LE(report["placed"]["max_load_over_mean"].get<double>(), 1.1 + 1e-9) << report.dump();
  EXPECT_GT(report["sets"].get<int64_t>(), 0);
  TokenArray tokens;
  tokens.shape = {2, 16};
  for (int32_t i = 0; i < 32; ++i) tokens.ids.push_back((i * 37 + 5) % 128);
  write_token_npy(work / "tokens.npy", tokens);
  const fs::path testbed = fs::path(TEMOE_SOURCE_DIR) / "configs/testbed/model";
  run = run_shell_command(forward_command(0, testbed, work / "tokens.npy", work / "single.npy"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  run = run_shell_command(forward_command(4, testbed, work / "tokens.npy", work / "placed.npy",
                                          "--parallel.ep_size=4 --parallel.placement=" + shell_quote(work / "placement.json")));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const Tensor single = read_float_npy(work / "single.npy");
  EXPECT_LE(max_relative_difference(read_float_npy(work / "placed.npy"), single), forward_bound(testbed, single));
  fs::remove_all(work);
}

TEST(ExpertParallelLayout, RefusesLayoutsThatDoNotFit) {
  const fs::path model = kFixtures / "mixtral_f32";  // 4 experts
  const fs::path work = scratch_directory("layout");
  for (const BadLayout& bad : {BadLayout{2, 3, "does not divide the model's 4 experts"},
                               BadLayout{4, 8, "does not divide the model's 4 experts"},
                               BadLayout{3, 2, "does not divide the world of 3 ranks"},
                               BadLayout{2, -1, "expected 0 (automatic) or a positive count"}}) {
    const auto run = run_shell_command(
        forward_command(bad.ranks, model, model / "tokens.npy", work / "out.npy", "--parallel.ep_size=" + std::to_string(bad.ep)),
        std::chrono::seconds(60));
    EXPECT_NE(run.exit_code, 0) << bad.ranks << " ranks, ep " << bad.ep;
    EXPECT_NE(run.output.find(bad.message), std::string::npos) << run.output;
    EXPECT_FALSE(fs::exists(work / "out.npy"));
  }
  fs::remove_all(work);
}

}  // namespace
}  // namespace temoe
