// temoe train and temoe eval end to end on a tiny random model and topic data: determinism at a
// fixed world size, data-parallel equivalence (2 ranks x B = 1 rank x 2B), the deliberation cost
// holding masks, the objective improving, the evaluation report with its baselines, and a
// locality bias keeping held masks on their home rank.
#include <gtest/gtest.h>

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

class ControllerTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = fs::temp_directory_path() / ("temoe-e2e-train-" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    for (const std::string& command :
         {kBinary + " make-data --out " + shell_quote(work_ / "data.h5") + " --seed 1 --data.documents=60",
          kBinary + " make-data --out " + shell_quote(work_ / "eval.h5") + " --seed 2 --data.documents=20",
          kBinary + " init-model --arch mixtral --preset tiny --seed 3 --out " + shell_quote(work_ / "model")}) {
      const auto result = run_shell_command(command);
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(work_); }

  // Trains into work_/name and returns the metrics lines.
  static std::vector<nlohmann::json> train(const std::string& name, int ranks, const std::string& extra,
                                           int batch = 4) {
    const std::string program = kBinary + " train --model " + shell_quote(work_ / "model") + " --data.path=" +
                                shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / name) +
                                " --controller.k_hat=4 --train.sequence_length=32 --train.batch_size=" + std::to_string(batch) +
                                " --train.learning_rate=3e-3 --train.log_every=1000 " + extra;
    const auto result = run_shell_command(ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program,
                                          std::chrono::seconds(300));
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

  static double mean_of(const std::vector<nlohmann::json>& lines, const char* key, size_t first, size_t last) {
    double total = 0;
    for (size_t i = first; i < last; ++i) total += lines[i][key].get<double>();
    return total / static_cast<double>(last - first);
  }

  static fs::path work_;
};

fs::path ControllerTraining::work_;

TEST_F(ControllerTraining, SameSeedAndWorldSizeGiveBitIdenticalRuns) {
  for (int ranks : {1, 2}) {
    const std::string a = "same-a-np" + std::to_string(ranks), b = "same-b-np" + std::to_string(ranks);
    auto first = train(a, ranks, "--train.steps=4");
    auto second = train(b, ranks, "--train.steps=4");
    ASSERT_EQ(first.size(), 4u);
    ASSERT_EQ(second.size(), 4u);
    for (size_t i = 0; i < first.size(); ++i) {
      first[i].erase("tokens_per_s");  // wall-clock time is the one thing allowed to differ
      second[i].erase("tokens_per_s");
      EXPECT_EQ(first[i].dump(), second[i].dump()) << ranks << " ranks, step " << i;
    }
    EXPECT_EQ(file_bytes(work_ / a / "controller.h5"), file_bytes(work_ / b / "controller.h5")) << ranks << " ranks";
  }
  // A different seed is a different run.
  auto other = train("other-seed", 1, "--train.steps=1 --train.seed=2");
  auto base = train("base-seed", 1, "--train.steps=1");
  EXPECT_NE(other[0]["reward"], base[0]["reward"]);
}

TEST_F(ControllerTraining, OptionModeDispatchTrainsBitForBitLikeTokenMode) {
  // Teacher-forced rollouts and sampled ones (whose decode steps keep plans across positions).
  for (const std::string rollout : {"teacher_forced", "sampled"}) {
    const std::string options = "--train.steps=3 --rollout.mode=" + rollout + " --rollout.prompt_length=8";
    auto token = train("dispatch-token-" + rollout, 2, options + " --parallel.dispatch=token");
    auto option = train("dispatch-option-" + rollout, 2, options + " --parallel.dispatch=option");
    ASSERT_EQ(token.size(), 3u);
    ASSERT_EQ(option.size(), 3u);
    for (size_t i = 0; i < token.size(); ++i) {
      // Token mode learns its receive sizes on every exchange; option mode keeps held plans.
      EXPECT_EQ(token[i]["dispatch"]["counts_exchange_skipped_fraction"].get<double>(), 0.0);
      // (The first teacher-forced step makes every layer's plan; decode steps reuse them at once.)
      if (i > 0 || rollout == "sampled") {
        EXPECT_GT(option[i]["dispatch"]["counts_exchange_skipped_fraction"].get<double>(), 0.0) << rollout << ", step " << i;
      }
      EXPECT_EQ(option[i]["dispatch"]["mode"], "option");
      for (auto* line : {&token[i], &option[i]}) {
        line->erase("tokens_per_s");
        line->erase("dispatch");
      }
      EXPECT_EQ(token[i].dump(), option[i].dump()) << rollout << ", step " << i;
    }
  }
  const auto bad = run_shell_command(kBinary + " train --model " + shell_quote(work_ / "model") + " --data.path=" +
                                     shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / "bad-dispatch") +
                                     " --parallel.dispatch=tokens");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("parallel.dispatch = tokens: expected token or option"), std::string::npos) << bad.output;
}

TEST_F(ControllerTraining, TwoRanksWithBatchBMatchOneRankWithBatch2B) {
  const auto one = train("dp-1", 1, "--train.steps=3");
  const auto two = train("dp-2", 2, "--train.steps=3");
  ASSERT_EQ(one.size(), two.size());
  // Another world size reassociates the frozen model's GEMMs (other row counts) and the sums over
  // ranks, so parameters and per-step figures agree to the training reassociation bound of
  // numeric_bounds.hpp (the controllers' own layers are d_model wide, like the model's, and are
  // inside the bound's forward and backward terms), relative to max(1, |value|). The switch rate is
  // a count of discrete decisions: it agrees exactly unless a draw lands within the bound of its
  // beta, which the bound's comment puts well under 1e-2 for this test.
  const ModelConfig config = ModelConfig::from_file(work_ / "model" / "config.json");
  const auto shape = testing::forward_shape(config, 32);
  const int64_t tokens_per_step = 2 * 4 * 32;
  const auto parameters_one = read_controller_values(work_ / "dp-1" / "controller.h5");
  const auto parameters_two = read_controller_values(work_ / "dp-2" / "controller.h5");
  ASSERT_EQ(parameters_one.size(), parameters_two.size());
  ASSERT_GT(parameters_one.size(), 10u);
  const double parameter_bound = testing::training_reassociation_bound(shape, tokens_per_step, static_cast<int64_t>(one.size()));
  for (const auto& [name, values] : parameters_one) {
    const auto& other = parameters_two.at(name);
    ASSERT_EQ(values.size(), other.size()) << name;
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_NEAR(values[i], other[i], parameter_bound * std::max(1.0f, std::fabs(values[i]))) << name << "[" << i << "]";
    }
  }
  for (size_t i = 0; i < one.size(); ++i) {
    const double bound = testing::figure_after_updates_bound(shape, tokens_per_step, static_cast<int64_t>(i));
    for (const char* key : {"reward", "kl", "gradient_norm"}) {
      const double a = one[i][key].get<double>(), b = two[i][key].get<double>();
      EXPECT_NEAR(a, b, bound * std::max(1.0, std::fabs(a))) << key << " at step " << i;
    }
    // The same number of switches: closer than one decision in the step's (token, layer) pairs.
    const double one_decision = 1.0 / (one[i]["tokens"].get<double>() * static_cast<double>(config.num_layers));
    EXPECT_NEAR(one[i]["switch_rate"].get<double>(), two[i]["switch_rate"].get<double>(), 0.5 * one_decision) << "step " << i;
    EXPECT_EQ(one[i]["tokens"], two[i]["tokens"]);
    for (size_t layer = 0; layer < one[i]["losses_per_layer"].size(); ++layer) {
      for (const char* key : {"value", "q", "termination", "selection"}) {
        const double a = one[i]["losses_per_layer"][layer][key].get<double>();
        const double b = two[i]["losses_per_layer"][layer][key].get<double>();
        EXPECT_NEAR(a, b, bound * std::max(1.0, std::fabs(a))) << key << " of layer " << layer << " at step " << i;
      }
    }
  }
}

TEST_F(ControllerTraining, TheDeliberationCostHoldsMasksAndTheObjectiveImproves) {
  // The termination advantage is Q(h, w_{t-1}) - Q(h, w_hat) + eta: until Q tells masks apart,
  // an eta of 0 gives termination little to learn from, so the runs are 60 steps long.
  const auto free_switching = train("eta-0", 1, "--train.steps=60 --controller.eta=0", 8);
  const auto costly = train("eta-high", 1, "--train.steps=60 --controller.eta=0.5", 8);
  ASSERT_EQ(free_switching.size(), 60u);
  ASSERT_EQ(costly.size(), 60u);
  // Without a cost the controllers learn to switch more (and so to track the teacher better);
  // with a high one they stop switching.
  const double free_late = mean_of(free_switching, "switch_rate", 45, 60);
  const double costly_late = mean_of(costly, "switch_rate", 45, 60);
  EXPECT_GT(free_late, 3 * costly_late + 0.05) << free_late << " vs " << costly_late;
  // The objective: where switching is free the student moves towards the teacher, both over
  // training and against the run that the cost keeps from switching.
  const double kl_early = mean_of(free_switching, "kl", 0, 10), kl_late = mean_of(free_switching, "kl", 45, 60);
  const double costly_kl_late = mean_of(costly, "kl", 45, 60);
  EXPECT_LT(kl_late, 0.9 * kl_early) << kl_early << " -> " << kl_late;
  EXPECT_LT(kl_late, 0.9 * costly_kl_late) << kl_late << " vs " << costly_kl_late;
  std::printf("switch rate late in training: eta 0 %.3f, eta 0.5 %.3f; KL at eta 0: %.4f -> %.4f, at eta 0.5: %.4f\n",
              free_late, costly_late, kl_early, kl_late, costly_kl_late);
}

TEST_F(ControllerTraining, EvalReportsTheControllerBesideEveryBaseline) {
  train("for-eval", 1, "--train.steps=3");
  // Evaluates the run on `ranks` ranks into work_/name.
  const auto eval = [](int ranks, const std::string& name) {
    const std::string program = kBinary + " eval --model " + shell_quote(work_ / "model") + " --data.path=" +
                                shell_quote(work_ / "data.h5") + " --data.eval_path=" + shell_quote(work_ / "eval.h5") +
                                " --run-dir " + shell_quote(work_ / "for-eval") +
                                " --train.sequence_length=32 --train.batch_size=4 --eval.batches=2 --json " +
                                shell_quote(work_ / name);
    return run_shell_command(ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program,
                             std::chrono::seconds(120));
  };
  const auto result = eval(1, "eval.json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(std::ifstream(work_ / "eval.json"));
  for (const char* key : {"switch_rate", "kl", "retention", "mean_option_duration", "utilization_entropy"}) {
    EXPECT_TRUE(report.contains(key)) << key;
  }
  for (const char* baseline : {"topk", "fixed", "random", "greedy_cache"}) {
    for (const char* key : {"switch_rate", "kl", "retention"}) EXPECT_TRUE(report["baselines"][baseline].contains(key)) << baseline;
  }
  // The teacher against itself, and a fixed mask never switching.
  EXPECT_EQ(report["baselines"]["topk"]["kl"].get<double>(), 0.0);
  EXPECT_EQ(report["baselines"]["topk"]["retention"].get<double>(), 1.0);
  EXPECT_GT(report["baselines"]["topk"]["switch_rate"].get<double>(), 0.3);
  EXPECT_EQ(report["baselines"]["fixed"]["switch_rate"].get<double>(), 0.0);
  EXPECT_GT(report["baselines"]["fixed"]["kl"].get<double>(), 0.0);
  // Random switching runs at the controller's measured rate (its own draws, so only close).
  EXPECT_NEAR(report["baselines"]["random"]["switch_rate"].get<double>(), report["switch_rate"].get<double>(), 0.03);
  EXPECT_NE(result.output.find("greedy cache"), std::string::npos) << result.output;
  EXPECT_EQ(report["remote_ranks_per_mask"].get<double>(), 0.0) << "one rank holds every expert";
  // The referee's measures: top-1 agreement and the NLL gap (the teacher agrees with itself, with
  // no gap), experts loaded per switch (between 1 and k_hat), per-layer rates.
  for (const char* policy : {"topk", "fixed", "random", "greedy_cache"}) {
    for (const char* key : {"top1_agreement", "nll_gap", "experts_loaded_per_switch", "switch_rate_per_layer"}) {
      EXPECT_TRUE(report["baselines"][policy].contains(key)) << policy << " " << key;
    }
  }
  EXPECT_EQ(report["baselines"]["topk"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(report["baselines"]["topk"]["nll_gap"].get<double>(), 0.0);
  EXPECT_LT(report["baselines"]["fixed"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(report["switch_rate_per_layer"].size(), 2u);
  const double loaded = report["baselines"]["greedy_cache"]["experts_loaded_per_switch"].get<double>();
  EXPECT_GE(loaded, 1.0);
  EXPECT_LE(loaded, 4.0);
  // The greedy cache as a front over its decays, and the segment oracle (the topic data have domains):
  // it switches only where the topic changes, so less often than plain top-k.
  ASSERT_EQ(report["baselines"]["greedy_cache_front"].size(), 9u);
  EXPECT_EQ(report["baselines"]["greedy_cache_front"][3]["decay"].get<double>(), 0.9);
  EXPECT_EQ(report["baselines"]["greedy_cache_front"][3]["kl"], report["baselines"]["greedy_cache"]["kl"]);
  EXPECT_TRUE(report.contains("greedy_cache_kl_at_controller_rate"));
  ASSERT_TRUE(report["baselines"].contains("segment_oracle"));
  EXPECT_GT(report["baselines"]["segment_oracle"]["switch_rate"].get<double>(), 0.0);
  EXPECT_LT(report["baselines"]["segment_oracle"]["switch_rate"].get<double>(),
            report["baselines"]["topk"]["switch_rate"].get<double>());

  // Over 2 expert-parallel ranks a held mask spans at most the one other rank, and some masks do.
  const auto parallel = eval(2, "eval-np2.json");
  ASSERT_EQ(parallel.exit_code, 0) << parallel.output;
  const auto spread = nlohmann::json::parse(std::ifstream(work_ / "eval-np2.json"));
  const double remote = spread["remote_ranks_per_mask"].get<double>();
  EXPECT_GT(remote, 0.0);
  EXPECT_LE(remote, 1.0);
  EXPECT_EQ(spread["baselines"]["topk"]["remote_ranks_per_mask"].get<double>(), 0.0) << "the teacher holds no mask";
}

TEST_F(ControllerTraining, ALocalityBiasKeepsEveryHeldMaskOnItsHomeRank) {
  // 8 experts over 2 ranks: a mask of k_hat = 4 can lie on the home rank alone, and with a bias of
  // 50 logits every selection (training and the evaluation's greedy one) puts it there.
  train("local", 2, "--train.steps=2 --controller.selection_locality_bias=50");
  const std::string program = kBinary + " eval --model " + shell_quote(work_ / "model") + " --data.path=" +
                              shell_quote(work_ / "data.h5") + " --data.eval_path=" + shell_quote(work_ / "eval.h5") +
                              " --run-dir " + shell_quote(work_ / "local") +
                              " --train.sequence_length=32 --train.batch_size=4 --eval.batches=2 --json " +
                              shell_quote(work_ / "eval-local.json");
  const auto result = run_shell_command(kMpirun + " -np 2 " + program, std::chrono::seconds(120));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(std::ifstream(work_ / "eval-local.json"));
  EXPECT_EQ(report["remote_ranks_per_mask"].get<double>(), 0.0) << "the bias comes from the run's config";
  EXPECT_GT(report["baselines"]["greedy_cache"]["remote_ranks_per_mask"].get<double>(), 0.0) << "baselines ignore it";

  const auto negative = run_shell_command(kBinary + " train --model " + shell_quote(work_ / "model") + " --data.path=" +
                                          shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / "negative") +
                                          " --controller.selection_locality_bias=-1");
  EXPECT_NE(negative.exit_code, 0);
  EXPECT_NE(negative.output.find("controller.selection_locality_bias = -1"), std::string::npos) << negative.output;
}

}  // namespace
}  // namespace temoe
