// `temoe make-data`: writes a readable token-data file with the requested parameters, prints and
// records its measured statistics, and refuses bad flags by name.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "src/data/token_dataset.hpp"
#include "src/data/topic_language.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe::data {
namespace {

namespace fs = std::filesystem;

// Runs the temoe binary with `arguments` (already shell-quoted), stdout and stderr together.
testing::CommandResult run_temoe(const std::string& arguments) {
  return testing::run_shell_command(testing::shell_quote(TEMOE_BINARY) + " " + arguments);
}

class MakeDataCommand : public testing::ScratchDirectoryTest {
 protected:
  std::string path(const std::string& name) const { return "'" + (directory_ / name).string() + "'"; }

};

TEST_F(MakeDataCommand, WritesTheFileAndItsStatistics) {
  const auto result =
      run_temoe("make-data --out " + path("data.h5") + " --json " + path("stats.json") +
                " --seed 3 --data.documents=50 --data.document_length=256 --data.topics=8 --data.vocab_size=256"
                " --data.mean_segment_length=64 --data.own_vocabulary_probability=0.8");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("50 documents, 12800 tokens, vocabulary 256, 8 topics"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("mean segment length"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("unigram entropy"), std::string::npos) << result.output;

  const TokenDataset dataset = read_token_dataset(directory_ / "data.h5");
  EXPECT_EQ(dataset.document_count(), 50);
  EXPECT_EQ(dataset.vocab_size, 256);
  EXPECT_EQ(dataset.topic_count, 8);
  const auto parameters = TopicLanguageOptions::from_json(nlohmann::json::parse(dataset.generator));
  EXPECT_EQ(parameters.seed, 3u);
  EXPECT_EQ(parameters.mean_segment_length, 64);
  EXPECT_EQ(parameters.own_vocabulary_probability, 0.8);

  std::ifstream stream(directory_ / "stats.json");
  const nlohmann::json report = nlohmann::json::parse(stream);
  EXPECT_EQ(report["parameters"]["topics"], 8);
  EXPECT_EQ(report["statistics"]["tokens"], 12800);
  EXPECT_NEAR(report["statistics"]["own_fraction_overall"].get<double>(), 0.8, 0.03);
  EXPECT_GT(report["statistics"]["unigram_entropy_nats"].get<double>(), 4.0);
}

TEST_F(MakeDataCommand, RefusesBadFlagsByName) {
  auto result = run_temoe("make-data --data.documents=5");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("--out FILE.h5 is required"), std::string::npos) << result.output;
  result = run_temoe("make-data --out " + path("x.h5") + " --data.topics=1");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("data.topics = 1"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(directory_ / "x.h5"));
  result = run_temoe("make-data --out " + path("x.h5") + " --data.colours=3");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("data.colours"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace temoe::data
