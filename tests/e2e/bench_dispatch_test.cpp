// `mpirun -np 4 temoe bench dispatch` end to end on the testbed model: the JSON carries the token,
// option, floor and modelled figures; with masks that hold every expert, option mode routes like
// token mode (the same bytes) and negotiates only when the token count changes; with smaller
// masks, held plans skip most counts exchanges in decode steps.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe::testing {
namespace {

namespace fs = std::filesystem;
const fs::path kSource = TEMOE_SOURCE_DIR;

// T = 32 positions, decode after 8: 24 decode steps per layer.
nlohmann::json bench(const std::string& name, const std::string& options) {
  const fs::path json = fs::temp_directory_path() / ("temoe-bench-dispatch-" + name + "-" + std::to_string(::getpid()) + ".json");
  const auto result = run_shell_command(kMpirun + " -np 4 " + kBinary + " bench dispatch --model " +
                                        shell_quote(kSource / "configs/testbed/model") +
                                        " --time 32 --batch 4 --warmups 1 --repeats 1 --replays 1 --decode-prompt 8 --json " +
                                        shell_quote(json) + " " + options);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("option/token, decode"), std::string::npos) << result.output;
  std::ifstream file(json);
  EXPECT_TRUE(file.good()) << json;
  if (!file.good()) return {};
  auto report = nlohmann::json::parse(file);
  fs::remove(json);
  return report;
}

void expect_mode_keys(const nlohmann::json& mode) {
  for (const char* key : {"remote_bytes_per_token", "messages_per_step", "peers_per_step", "seconds_per_layer",
                          "counts_exchange_skipped_fraction"}) {
    EXPECT_TRUE(mode.contains(key)) << key << " missing in " << mode.dump();
  }
}

TEST(BenchDispatch, MasksOfEveryExpertSendWhatTokenModeSendsAndNegotiateOnlyWhenTheTokenCountChanges) {
  const nlohmann::json report = bench("all", "--controller.k_hat=16");
  ASSERT_FALSE(report.is_null());
  for (const char* mode : {"token", "option"}) {
    expect_mode_keys(report[mode]);
    expect_mode_keys(report[mode]["decode"]);
  }
  EXPECT_GT(report["floor"]["seconds_per_layer"].get<double>(), 0);
  // Both modes' calls replayed (teacher-forced and decode), so the time ratios come from the
  // same conditions.
  for (const char* workload : {"teacher_forced", "decode"}) {
    EXPECT_GT(report["option_over_token"][workload]["replay_seconds_per_layer"].get<double>(), 0) << workload;
  }
  EXPECT_GT(report["option"]["replay_seconds_per_layer"].get<double>(), 0);
  EXPECT_GT(report["token"]["decode"]["replay_seconds_per_layer"].get<double>(), 0);
  const nlohmann::json& token = report["token"];
  const nlohmann::json& option = report["option"];
  EXPECT_EQ(option["switch_rate"].get<double>(), 0.0) << "a mask of all 16 experts never needs reloading";
  EXPECT_EQ(option["decode"]["switch_rate"].get<double>(), 0.0);
  // Holding every expert, masked routing is plain top-k: the same rows go to the same ranks.
  EXPECT_EQ(option["remote_bytes_per_token"].get<double>(), token["remote_bytes_per_token"].get<double>());
  EXPECT_EQ(option["decode"]["remote_bytes_per_token"].get<double>(), token["decode"]["remote_bytes_per_token"].get<double>());
  // Token mode learns its receive sizes on every call; option mode only on the first decode step
  // of each layer (one token per sequence after a prompt of 8: the token count changed).
  EXPECT_EQ(token["counts_exchange_skipped_fraction"].get<double>(), 0.0);
  EXPECT_EQ(token["decode"]["counts_exchange_skipped_fraction"].get<double>(), 0.0);
  EXPECT_NEAR(option["decode"]["counts_exchange_skipped_fraction"].get<double>(), 1.0 - 1.0 / 24, 1e-12);
  EXPECT_EQ(option["decode"]["plan_checks_per_step"].get<double>(), 1.0);
  // The modelled times: three world sizes, both modes; the dense counts exchange makes token mode
  // grow with the world, held plans keep option mode below it at 512 ranks.
  const nlohmann::json& modelled = report["modelled"];
  ASSERT_EQ(modelled["ranks"], nlohmann::json({8, 64, 512}));
  ASSERT_EQ(modelled["token"].size(), 3u);
  ASSERT_EQ(modelled["option"].size(), 3u);
  EXPECT_LT(modelled["token"][0].get<double>(), modelled["token"][2].get<double>());
  EXPECT_LT(modelled["decode"]["option"][2].get<double>(), modelled["decode"]["token"][2].get<double>());
}

TEST(BenchDispatch, HeldMasksSkipMostCountsExchangesInDecodeSteps) {
  const nlohmann::json report = bench("held", "--controller.k_hat=12");
  ASSERT_FALSE(report.is_null());
  const nlohmann::json& option = report["option"];
  const double switch_rate = option["decode"]["switch_rate"].get<double>();
  EXPECT_GT(switch_rate, 0.0) << "the greedy cache reloads on random tokens";
  EXPECT_LT(switch_rate, 1.0);
  // A switch renegotiates only when a rank's bounds change, which masks of 12 of 16 experts
  // (spanning every rank) rarely do.
  EXPECT_GT(option["decode"]["counts_exchange_skipped_fraction"].get<double>(), 0.9);
  EXPECT_EQ(option["k_hat"].get<int64_t>(), 12);
}

}  // namespace
}  // namespace temoe::testing
