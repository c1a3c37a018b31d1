// `temoe pretrain` end to end on the topic language (`temoe make-data`):
//  - a tiny MoE trained for 200 steps ends well below the data's unigram entropy (more than one
//    nat below: the data's entropy given the previous token is ~3.1 nats of a unigram ~4.8);
//  - the model it writes is a Hugging Face model that `temoe forward` loads;
//  - the same seed and world size give a bit-identical loss curve (1 rank, and 2 expert-parallel
//    ranks), and 2 ranks follow the 1-rank curve to the training reassociation bound of
//    numeric_bounds.hpp (the same sequences, split differently, so sums are taken in another order);
//  - a run stopped after a checkpoint and started again continues bit for bit (same world size),
//    also from a checkpoint written by another world size (to the same bound);
//  - the routing-locality term lowers the entropy of the windows' routing against the same run
//    without it, and its rank shares add up (2 ranks follow 1 rank to the same bound).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/io/npy_file.hpp"
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

fs::path scratch_directory(const std::string& name) {
  const fs::path directory = fs::temp_directory_path() / ("temoe-e2e-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(directory);
  fs::create_directories(directory);
  return directory;
}

// 128 documents of 512 tokens of the default topic language.
fs::path make_data(const fs::path& work) {
  const fs::path data = work / "data.h5";
  const auto result = run_shell_command(kBinary + " make-data --out " + shell_quote(data) +
                                        " --data.documents=128 --data.document_length=512");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return data;
}

constexpr int64_t kBatchSize = 16, kSequenceLength = 64;

std::string pretrain_command(int ranks, const fs::path& data, const fs::path& out, int64_t steps,
                             const std::string& extra = "") {
  const std::string program = kBinary + " pretrain --data " + shell_quote(data) + " --out " + shell_quote(out) +
                              " --pretrain.steps=" + std::to_string(steps) +
                              " --pretrain.batch_size=" + std::to_string(kBatchSize) +
                              " --pretrain.sequence_length=" + std::to_string(kSequenceLength) +
                              " --pretrain.log_interval=50 " + extra;
  return ranks == 0 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
}

// The loss at step `step` (1-based) of two runs whose arithmetic differs by reassociation only:
// logged after step - 1 updates, each bounded as in numeric_bounds.hpp.
double cross_world_size_bound(const fs::path& run_output, int64_t step) {
  const auto shape = testing::forward_shape(ModelConfig::from_file(run_output / "config.json"), kSequenceLength);
  return testing::figure_after_updates_bound(shape, kBatchSize * kSequenceLength, step - 1);
}

std::vector<double> loss_curve(const fs::path& run) {
  std::vector<double> losses;
  std::ifstream stream(run / "metrics.jsonl");
  std::string line;
  while (std::getline(stream, line)) losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return losses;
}

TEST(Pretrain, LowersTheLossWellBelowTheUnigramEntropy) {
  const fs::path work = scratch_directory("pretrain");
  const fs::path data = make_data(work);
  const auto result = run_shell_command(pretrain_command(0, data, work / "model", 200, "--pretrain.warmup_steps=20"),
                                        std::chrono::seconds(240));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("step   200/200"), std::string::npos) << result.output;
  const auto summary = nlohmann::json::parse(std::ifstream(work / "model" / "run" / "summary.json"));
  const double entropy = summary["unigram_entropy"].get<double>(), loss = summary["final_loss"].get<double>();
  std::printf("[ measured ] unigram entropy %.4f nats, loss after 200 steps %.4f, %.1f ms/step, %.0f tokens/s\n", entropy,
              loss, 1000.0 * summary["seconds_per_step"].get<double>(), summary["tokens_per_second"].get<double>());
  EXPECT_GT(entropy, 4.0);
  EXPECT_LT(loss, entropy - 1.0) << result.output;
  const auto losses = loss_curve(work / "model" / "run");
  ASSERT_EQ(losses.size(), 200u);
  EXPECT_GT(losses.front(), entropy - 0.2);  // starts near the uniform guess

  // The written model is a Hugging Face model that temoe forward loads.
  TokenArray tokens{{2, 16}, std::vector<int32_t>(32)};
  for (size_t i = 0; i < tokens.ids.size(); ++i) tokens.ids[i] = static_cast<int32_t>((7 * i) % 128);
  write_token_npy(work / "tokens.npy", tokens);
  const auto forward = run_shell_command(kBinary + " forward --model " + shell_quote(work / "model") + " --tokens " +
                                         shell_quote(work / "tokens.npy") + " --out " + shell_quote(work / "logits.npy"));
  ASSERT_EQ(forward.exit_code, 0) << forward.output;
  const Tensor logits = read_float_npy(work / "logits.npy");
  EXPECT_EQ(logits.shape(), (Shape{2, 16, 128}));
  for (int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits.data()[i]));
  fs::remove_all(work);
}

TEST(Pretrain, SameSeedSameWorldSizeGivesABitIdenticalLossCurve) {
  const fs::path work = scratch_directory("pretrain-determinism");
  const fs::path data = make_data(work);
  const std::string extra = "--pretrain.warmup_steps=3 --pretrain.seed=5";
  std::vector<std::vector<double>> curves;
  for (const auto& [ranks, name] : std::vector<std::pair<int, std::string>>{{0, "a"}, {0, "b"}, {2, "c"}, {2, "d"}}) {
    const auto result = run_shell_command(pretrain_command(ranks, data, work / name, 12, extra + " --parallel.ep_size=" +
                                                                                          std::to_string(ranks == 2 ? 2 : 0)),
                                          std::chrono::seconds(120));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    curves.push_back(loss_curve(work / name / "run"));
    ASSERT_EQ(curves.back().size(), 12u) << name;
  }
  EXPECT_EQ(curves[0], curves[1]) << "two 1-rank runs differ";
  EXPECT_EQ(curves[2], curves[3]) << "two 2-rank expert-parallel runs differ";
  for (size_t step = 0; step < curves[0].size(); ++step) {
    const double bound = cross_world_size_bound(work / "a", static_cast<int64_t>(step) + 1);
    EXPECT_NEAR(curves[2][step], curves[0][step], bound * curves[0][step]) << "step " << step + 1;
  }
  // And a different seed gives a different run.
  const auto other = run_shell_command(pretrain_command(0, data, work / "e", 12, "--pretrain.warmup_steps=3 --pretrain.seed=6"));
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(loss_curve(work / "e" / "run"), curves[0]);
  fs::remove_all(work);
}

// Per step: the mean over layers of the windows' routing entropy, and the locality term.
std::vector<std::pair<double, double>> locality_curve(const fs::path& run) {
  std::vector<std::pair<double, double>> curve;
  std::ifstream stream(run / "metrics.jsonl");
  std::string line;
  while (std::getline(stream, line)) {
    const auto json = nlohmann::json::parse(line);
    double entropy = 0.0;
    for (const auto& layer : json["window_entropy"]) entropy += layer.get<double>() / static_cast<double>(json["window_entropy"].size());
    curve.emplace_back(entropy, json["routing_locality"].get<double>());
  }
  return curve;
}

TEST(Pretrain, RoutingLocalityLowersTheWindowsRoutingEntropy) {
  const fs::path work = scratch_directory("pretrain-locality");
  const fs::path data = make_data(work);
  const std::string extra = "--pretrain.warmup_steps=3 --pretrain.locality_window=16";
  const std::string local = extra + " --pretrain.routing_locality=0.5";
  const auto plain = run_shell_command(pretrain_command(0, data, work / "plain", 40, extra), std::chrono::seconds(120));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const auto shaped = run_shell_command(pretrain_command(0, data, work / "local", 40, local), std::chrono::seconds(120));
  ASSERT_EQ(shaped.exit_code, 0) << shaped.output;
  EXPECT_NE(shaped.output.find("locality"), std::string::npos) << "the progress line names the term: " << shaped.output;
  const auto without = locality_curve(work / "plain" / "run"), with = locality_curve(work / "local" / "run");
  ASSERT_EQ(without.size(), 40u);
  ASSERT_EQ(with.size(), 40u);
  // The same start (same seed and data), so the first step's entropies agree; only the shaped run
  // pays the term and learns to route a window through fewer experts.
  EXPECT_DOUBLE_EQ(with.front().first, without.front().first);
  EXPECT_EQ(without.back().second, 0.0);
  EXPECT_NEAR(with.front().second, 0.5 * with.front().first, 1e-9 * with.front().first);
  std::printf("[ measured ] windows' routing entropy after 40 steps: %.3f nats with the term, %.3f without (start %.3f)\n",
              with.back().first, without.back().first, with.front().first);
  EXPECT_LT(with.back().first, without.back().first - 0.1);
  // Two data-parallel ranks: each computes its windows' share; the sum is the 1-rank value.
  const auto split = run_shell_command(pretrain_command(2, data, work / "split", 40, local), std::chrono::seconds(120));
  ASSERT_EQ(split.exit_code, 0) << split.output;
  const auto two = loss_curve(work / "split" / "run"), one = loss_curve(work / "local" / "run");
  ASSERT_EQ(two.size(), one.size());
  for (size_t step = 0; step < two.size(); ++step) {
    const double bound = cross_world_size_bound(work / "local", static_cast<int64_t>(step) + 1);
    EXPECT_NEAR(two[step], one[step], bound * one[step]) << "step " << step + 1;
  }
  fs::remove_all(work);
}

std::string read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

TEST(Pretrain, ResumesFromTheLatestCheckpointBitForBit) {
  const fs::path work = scratch_directory("pretrain-resume");
  const fs::path data = make_data(work);
  const std::string extra = "--pretrain.warmup_steps=3 --pretrain.checkpoint_interval=4";
  const auto whole = run_shell_command(pretrain_command(0, data, work / "whole", 12, extra));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  // Stopped after 6 steps: checkpoints at 4 and 6, no model yet.
  const auto first = run_shell_command(pretrain_command(0, data, work / "split", 12, extra + " --stop-after 6"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_FALSE(fs::exists(work / "split" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(work / "split" / "run" / "ckpt-4.h5"));
  EXPECT_TRUE(fs::exists(work / "split" / "run" / "ckpt-6.h5"));
  fs::copy(work / "split", work / "other", fs::copy_options::recursive);
  const auto second = run_shell_command(pretrain_command(0, data, work / "split", 12, extra));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("resuming from"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("at step 6"), std::string::npos) << second.output;
  const auto reference = loss_curve(work / "whole" / "run");
  EXPECT_EQ(loss_curve(work / "split" / "run"), reference);
  EXPECT_EQ(read_bytes(work / "split" / "model.safetensors"), read_bytes(work / "whole" / "model.safetensors"));

  // The 1-rank checkpoint continued by 2 expert-parallel ranks.
  const auto other = run_shell_command(pretrain_command(2, data, work / "other", 12, extra + " --parallel.ep_size=2"));
  ASSERT_EQ(other.exit_code, 0) << other.output;
  const auto continued = loss_curve(work / "other" / "run");
  ASSERT_EQ(continued.size(), reference.size());
  for (size_t step = 0; step < reference.size(); ++step) {
    // Steps up to the checkpoint were taken by one rank: bit for bit; after it, bounded as above.
    if (step < 6) {
      EXPECT_EQ(continued[step], reference[step]) << "step " << step + 1;
    } else {
      const double bound = cross_world_size_bound(work / "whole", static_cast<int64_t>(step) + 1 - 6);
      EXPECT_NEAR(continued[step], reference[step], bound * reference[step]) << "step " << step + 1;
    }
  }

  // A checkpoint of another architecture is refused, naming the file.
  const auto foreign = run_shell_command(pretrain_command(0, data, work / "split", 12, extra + " --pretrain.num_experts=4"));
  EXPECT_NE(foreign.exit_code, 0);
  EXPECT_NE(foreign.output.find("ckpt-12.h5"), std::string::npos) << foreign.output;
  fs::remove_all(work);
}

TEST(Pretrain, RefusesBadSettingsNamingTheKey) {
  const fs::path work = scratch_directory("pretrain-refusals");
  const fs::path data = make_data(work);
  const auto batch = run_shell_command(kMpirun + " -np 2 " + kBinary + " pretrain --data " + shell_quote(data) +
                                       " --out " + shell_quote(work / "m") + " --pretrain.batch_size=3");
  EXPECT_NE(batch.exit_code, 0);
  EXPECT_NE(batch.output.find("pretrain.batch_size = 3"), std::string::npos) << batch.output;
  const auto warmup = run_shell_command(kBinary + " pretrain --data " + shell_quote(data) + " --out " +
                                        shell_quote(work / "m") + " --pretrain.steps=5 --pretrain.warmup_steps=5");
  EXPECT_NE(warmup.exit_code, 0);
  EXPECT_NE(warmup.output.find("pretrain.warmup_steps"), std::string::npos) << warmup.output;
  const auto missing = run_shell_command(kBinary + " pretrain --data " + shell_quote(work / "absent.h5") + " --out " +
                                         shell_quote(work / "m"));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("absent.h5"), std::string::npos) << missing.output;
  const auto experts = run_shell_command(kBinary + " pretrain --data " + shell_quote(data) + " --out " +
                                            shell_quote(work / "m") + " --pretrain.num_experts=6 --pretrain.top_k=7");
  EXPECT_NE(experts.exit_code, 0);
  EXPECT_NE(experts.output.find("num_experts_per_tok 7"), std::string::npos) << experts.output;
  fs::remove_all(work);
}

}  // namespace
}  // namespace temoe
