// `temoe forward --adapters` end to end: the PyTorch reference's PEFT adapters
// (tests/fixtures/lora/, make_lora_fixtures.py) give its logits from the program on one rank and
// under `mpirun -np 2/4` with the experts, and so their adapters, split over the ranks; `temoe
// init-adapters` writes a zero-B adapter that leaves the logits bit-identical to no adapter.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/io/npy_file.hpp"
#include "src/model/model_config.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/numeric_bounds.hpp"
#include "tests/support/relative_difference.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::kBinary;
using testing::kMpirun;
using testing::max_relative_difference;
using testing::run_shell_command;
using testing::shell_quote;

const fs::path kFixtures = TEMOE_FIXTURE_DIR;

fs::path scratch_directory(const std::string& name) {
  const fs::path directory = fs::temp_directory_path() / ("temoe-e2e-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(directory);
  fs::create_directories(directory);
  return directory;
}

Tensor forward(int ranks, const fs::path& model, const fs::path& adapters, const fs::path& out, const std::string& extra = "") {
  std::string command = kBinary + " forward --model " + shell_quote(model) + " --tokens " + shell_quote(model / "tokens.npy") +
                        " --out " + shell_quote(out) + (adapters.empty() ? "" : " --adapters " + shell_quote(adapters)) + " " +
                        extra;
  if (ranks > 0) command = kMpirun + " -np " + std::to_string(ranks) + " " + command;
  const auto result = run_shell_command(command);
  EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  return read_float_npy(out);
}

TEST(AdapterForward, ReferenceAdaptersGiveTheReferenceLogitsOnOneRankAndSplitOverRanks) {
  const fs::path model = kFixtures / "mixtral_f32", adapters = kFixtures / "lora" / "mixtral_all";
  const fs::path work = scratch_directory("adapter-forward");
  const Tensor expected = read_float_npy(adapters / "logits.npy");
  const Tensor single = forward(0, model, adapters, work / "single.npy");
  EXPECT_LT(max_relative_difference(single, expected), 1e-4);
  for (const int ranks : {2, 4}) {
    // ep_size = ranks: each rank holds 4 / ranks experts and only their adapters.
    const Tensor split = forward(ranks, model, adapters, work / ("np" + std::to_string(ranks) + ".npy"),
                                 "--parallel.ep_size=" + std::to_string(ranks));
    EXPECT_LT(max_relative_difference(split, expected), 1e-4) << ranks << " ranks";
    EXPECT_LT(max_relative_difference(split, single),
              testing::forward_reassociation_bound(
                  testing::forward_shape(ModelConfig::from_file(model / "config.json"), single.shape()[1])))
        << ranks << " ranks against one";
  }
}

TEST(AdapterForward, InitAdaptersWritesPeftsZeroStartThatLeavesTheLogitsBitIdentical) {
  const fs::path model = kFixtures / "qwen2_moe_f32_sharded";
  const fs::path work = scratch_directory("init-adapters");
  const auto made = run_shell_command(kBinary + " init-adapters --model " + shell_quote(model) + " --out " +
                                      shell_quote(work / "zero") + " --rank 4 --alpha 8 --targets attention,experts,router");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  ASSERT_TRUE(fs::exists(work / "zero" / "adapter_config.json"));
  const Tensor base = forward(0, model, {}, work / "base.npy");
  const Tensor zero = forward(0, model, work / "zero", work / "zero.npy");
  EXPECT_EQ(zero.to_vector(), base.to_vector());
  // A random B changes them.
  const auto random = run_shell_command(kBinary + " init-adapters --model " + shell_quote(model) + " --out " +
                                        shell_quote(work / "random") + " --b-deviation 0.05");
  ASSERT_EQ(random.exit_code, 0) << random.output;
  EXPECT_GT(max_relative_difference(forward(0, model, work / "random", work / "random.npy"), base), 1e-3);
  // A bad directory is refused naming it.
  const auto bad = run_shell_command(kBinary + " forward --model " + shell_quote(model) + " --tokens " +
                                     shell_quote(model / "tokens.npy") + " --out " + shell_quote(work / "x.npy") +
                                     " --adapters " + shell_quote(work / "missing"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("adapter_config.json"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace temoe
