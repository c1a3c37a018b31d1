// Nothing lost, nobody in, end to end with temoe train:
//  - a second job on a run directory that a running job holds is refused at once, naming the
//    holder, and the running job's checkpoints and metrics are untouched; a job killed with -9
//    leaves a lock that the next job takes over with a note;
//  - a NaN injected into one rank's gradient at a chosen step (TEMOE_NONFINITE_INJECTION) skips
//    that step on every rank: the parameters equal those of a run that stopped before it, the
//    metrics count it, and every checkpoint stays finite; train.max_nonfinite_steps in a row stop
//    the run with an error, leaving only finite checkpoints and no controller.h5;
//  - a resume that would change the trajectory (eta, seed, another fine-tune of the same shapes) is
//    refused naming each key with its old and new value, unless --allow-config-change;
//  - a stuck rank ends the job within train.watchdog_seconds plus 10 s, naming rank, phase and step;
//  - a TERM during start-up ends the job with the checkpoint-and-stop status 3 (so sbatch requeues).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/checkpoint_file.hpp"
#include "src/learner/controller_file.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::kBinary;
using testing::kMpirun;
using testing::run_shell_command;
using testing::shell_quote;

class RunDirectorySafety : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = fs::temp_directory_path() / ("temoe-e2e-safety-" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    testing::make_training_files(work_, 40);
  }
  static void TearDownTestSuite() { fs::remove_all(work_); }

  static std::string command(const std::string& name, int ranks, const std::string& extra,
                             const std::string& model = "model") {
    const std::string program = kBinary + " train --model " + shell_quote(work_ / model) + " --data.path=" +
                                shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / name) +
                                " --controller.k_hat=4 --train.sequence_length=32 --train.batch_size=4"
                                " --train.learning_rate=3e-3 --train.log_every=1000 " +
                                extra;
    return ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
  }

  static CommandResult train(const std::string& name, int ranks, const std::string& extra,
                             const std::string& environment = "", const std::string& model = "model") {
    return run_shell_command(environment + " " + command(name, ranks, extra, model), std::chrono::seconds(300));
  }

  static std::vector<nlohmann::json> metrics(const std::string& name) {
    std::vector<nlohmann::json> lines;
    std::ifstream stream(work_ / name / "metrics.jsonl");
    for (std::string line; std::getline(stream, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  // Every committed checkpoint of a run reads back (the reader refuses non-finite values).
  static void expect_finite_checkpoints(const std::string& name, size_t at_least) {
    const auto files = list_checkpoints(work_ / name);
    EXPECT_GE(files.size(), at_least) << name;
    for (const auto& file : files) {
      EXPECT_NO_THROW(read_checkpoint_file(file)) << file;
    }
  }

  // Starts a 1-rank training in the background (output to `log`), returns its pid.
  static pid_t start_in_background(const std::string& name, const std::string& extra, const fs::path& log) {
    const fs::path pid_file = work_ / (name + ".pid");
    const auto started = run_shell_command(command(name, 1, extra) + " > " + shell_quote(log) + " 2>&1 < /dev/null & echo $! > " +
                                           shell_quote(pid_file));
    EXPECT_EQ(started.exit_code, 0) << started.output;
    std::ifstream stream(pid_file);
    pid_t pid = 0;
    stream >> pid;
    return pid;
  }

  static bool wait_for_metrics(const std::string& name, size_t lines, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (metrics(name).size() >= lines) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static bool wait_for_exit(pid_t pid, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::kill(pid, 0) != 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static inline fs::path work_;
};

TEST_F(RunDirectorySafety, ASecondWriterIsRefusedWhileTheFirstRuns) {
  const pid_t first = start_in_background("shared", "--train.steps=100000 --train.checkpoint_every=2", work_ / "first.log");
  ASSERT_GT(first, 0);
  ASSERT_TRUE(wait_for_metrics("shared", 3, std::chrono::seconds(120))) << "the first job did not start training";

  for (const int ranks : {1, 2}) {
    const CommandResult second = train("shared", ranks, "--resume --train.steps=100000");
    EXPECT_NE(second.exit_code, 0) << second.output;
    EXPECT_LT(second.seconds, 30.0) << "refused, but not at once";
    EXPECT_NE(second.output.find("is in use by another job"), std::string::npos) << second.output;
    EXPECT_NE(second.output.find("pid " + std::to_string(first)), std::string::npos) << second.output;
    EXPECT_EQ(::kill(first, 0), 0) << "the first job is gone after the second was refused";
  }

  // The first job stops cleanly on SIGTERM (checkpoint, exit 3): its metrics end at its checkpoint
  // and nothing of the refused jobs is in the directory.
  ASSERT_EQ(::kill(first, SIGTERM), 0);
  ASSERT_TRUE(wait_for_exit(first, std::chrono::seconds(60)));
  const auto files = list_checkpoints(work_ / "shared");
  ASSERT_FALSE(files.empty());
  const Checkpoint last = read_checkpoint_file(files.back());
  EXPECT_EQ(static_cast<int64_t>(metrics("shared").size()), last.step);
  for (const auto& entry : fs::directory_iterator(work_ / "shared")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
  // A clean exit empties the lock: the next job resumes without a take-over note.
  const CommandResult next = train("shared", 1, "--resume --train.steps=" + std::to_string(last.step + 1));
  EXPECT_EQ(next.exit_code, 0) << next.output;
  EXPECT_EQ(next.output.find("taking over"), std::string::npos) << next.output;

  // A job killed with -9 leaves its text in the lock; the next one takes over and names it.
  const pid_t killed = start_in_background("shared", "--resume --train.steps=100000", work_ / "killed.log");
  ASSERT_TRUE(wait_for_metrics("shared", static_cast<size_t>(last.step) + 3, std::chrono::seconds(120)));
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  ASSERT_TRUE(wait_for_exit(killed, std::chrono::seconds(30)));
  const int64_t resumable = read_checkpoint_file(list_checkpoints(work_ / "shared").back()).step;
  const CommandResult after_kill = train("shared", 1, "--resume --train.steps=" + std::to_string(resumable));
  EXPECT_EQ(after_kill.exit_code, 0) << after_kill.output;
  EXPECT_NE(after_kill.output.find("taking over the lock of a job that is gone"), std::string::npos) << after_kill.output;
  EXPECT_NE(after_kill.output.find("pid " + std::to_string(killed)), std::string::npos) << after_kill.output;
}

TEST_F(RunDirectorySafety, ANonFiniteStepIsSkippedOnEveryRankAndCheckpointsStayFinite) {
  // Rank 1 alone sees the NaN at step 2; both ranks skip that update. With the PopArt statistics
  // on, whose step changes values before the gradients are known, so that their restore is covered.
  const CommandResult skipped = train("nan-2", 2, "--train.steps=3 --train.checkpoint_every=1 --controller.value_statistics_rate=0.1",
                                        "TEMOE_NONFINITE_INJECTION=2:1");
  ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("warning: step 2 has a non-finite loss or gradient"), std::string::npos) << skipped.output;
  const auto lines = metrics("nan-2");
  ASSERT_EQ(lines.size(), 3u);
  for (size_t step = 0; step < lines.size(); ++step) {
    EXPECT_EQ(lines[step]["skipped_nonfinite"].get<bool>(), step == 2) << "step " << step;
    EXPECT_EQ(lines[step]["nonfinite_steps"].get<int64_t>(), step == 2 ? 1 : 0) << "step " << step;
  }
  expect_finite_checkpoints("nan-2", 2);
  // The skipped update left parameters and moments as they were: a run that stopped before it
  // wrote the same controller.
  const CommandResult two_steps = train("clean-2", 2, "--train.steps=2 --controller.value_statistics_rate=0.1");
  ASSERT_EQ(two_steps.exit_code, 0) << two_steps.output;
  EXPECT_EQ(read_controller_values(work_ / "nan-2" / "controller.h5"),
            read_controller_values(work_ / "clean-2" / "controller.h5"));
}

TEST_F(RunDirectorySafety, NonFiniteStepsInARowStopTheRunWithOnlyFiniteCheckpoints) {
  const CommandResult stopped = train("nan-run", 1, "--train.steps=10 --train.checkpoint_every=1 --train.max_nonfinite_steps=2",
                                      "TEMOE_NONFINITE_INJECTION=3:0:100");
  EXPECT_EQ(stopped.exit_code, 1) << stopped.output;
  EXPECT_NE(stopped.output.find("2 steps in a row (up to step 4) had a non-finite loss or gradient"), std::string::npos)
      << stopped.output;
  EXPECT_FALSE(fs::exists(work_ / "nan-run" / "controller.h5"));
  expect_finite_checkpoints("nan-run", 3);
  // A bad injection spec is refused, naming the variable.
  const CommandResult bad = train("nan-bad", 1, "--train.steps=1", "TEMOE_NONFINITE_INJECTION=x");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("TEMOE_NONFINITE_INJECTION='x': expected STEP[:RANK[:COUNT]]"), std::string::npos) << bad.output;
  const CommandResult zero = train("nan-bad", 1, "--train.steps=1 --train.max_nonfinite_steps=0");
  EXPECT_EQ(zero.exit_code, 1) << zero.output;
  EXPECT_NE(zero.output.find("train.max_nonfinite_steps = 0: expected at least 1"), std::string::npos) << zero.output;
}

TEST_F(RunDirectorySafety, AResumeThatChangesTheTrajectoryIsRefusedUnlessAllowed) {
  ASSERT_EQ(train("changed", 1, "--train.steps=2").exit_code, 0);
  const auto before = metrics("changed");
  const CommandResult refused = train("changed", 1, "--train.steps=4 --controller.eta=0.5 --train.seed=9");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("resuming would change the run's trajectory"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("controller.eta was 0.02, now 0.5"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("train.seed was 1, now 9"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("ckpt-2.h5"), std::string::npos) << refused.output;
  EXPECT_EQ(metrics("changed"), before);
  EXPECT_EQ(list_checkpoints(work_ / "changed").size(), 1u);

  // Another fine-tune: same architecture, names and shapes, other weights.
  const auto other = run_shell_command(kBinary + " init-model --arch mixtral --preset tiny --seed 4 --out " +
                                       shell_quote(work_ / "other-model"));
  ASSERT_EQ(other.exit_code, 0) << other.output;
  const CommandResult foreign = train("changed", 1, "--train.steps=4", "", "other-model");
  EXPECT_EQ(foreign.exit_code, 1) << foreign.output;
  EXPECT_NE(foreign.output.find("model.weights_content_hash was "), std::string::npos) << foreign.output;

  // Asked for: the run goes on, and says what changed.
  const CommandResult allowed = train("changed", 1, "--train.steps=3 --controller.eta=0.5 --allow-config-change");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
  EXPECT_NE(allowed.output.find("note: --allow-config-change: controller.eta was 0.02, now 0.5"), std::string::npos)
      << allowed.output;
  // Keys that do not change the trajectory change freely, with a note.
  const CommandResult longer = train("changed", 1, "--train.steps=4 --controller.eta=0.5 --train.keep_checkpoints=5");
  EXPECT_EQ(longer.exit_code, 0) << longer.output;
  EXPECT_NE(longer.output.find("changed since the checkpoint: train.keep_checkpoints = 5 (was 3)"), std::string::npos)
      << longer.output;
}

// Runs a shell script that starts `job` in the background (output to `log`), waits for `marker` in
// `watched` (up to 120 s; "marker=missing" if it never comes), optionally signals the job, and
// prints "status=S elapsed_ms=E" (from the marker to the exit).
CommandResult run_until_marker(const std::string& job, const std::string& marker, const std::string& signal,
                               const fs::path& log, const fs::path& watched) {
  const std::string script = job + " > " + shell_quote(log) + " 2>&1 < /dev/null & pid=$!; found=0; "
                             "for i in $(seq 1200); do grep -qF " + shell_quote(marker) + " " + shell_quote(watched) +
                             " 2>/dev/null && found=1 && break; sleep 0.1; done; "
                             "[ $found = 1 ] || echo marker=missing; start=$(date +%s%N); " +
                             (signal.empty() ? "" : "kill -" + signal + " $pid; ") +
                             "wait $pid; status=$?; end=$(date +%s%N); "
                             "echo \"status=$status elapsed_ms=$(( (end - start) / 1000000 ))\"; cat " + shell_quote(log);
  return run_shell_command(script, std::chrono::seconds(240));
}

double field(const std::string& output, const std::string& name) {
  const auto at = output.find(name + "=");
  return at == std::string::npos ? -1 : std::stod(output.substr(at + name.size() + 1));
}

TEST_F(RunDirectorySafety, AStuckRankEndsTheJobWithinTheWatchdogTime) {
  constexpr int kWatchdogSeconds = 3;
  const std::string job = "TEMOE_STALL_INJECTION=1:2 " +
                          command("stuck", 2, "--train.steps=50 --train.watchdog_seconds=" + std::to_string(kWatchdogSeconds));
  // The marker: step 1's metrics line, after which rank 1 stalls in step 2.
  const CommandResult result = run_until_marker(job, "\"step\":1,", "", work_ / "stuck.log", work_ / "stuck" / "metrics.jsonl");
  EXPECT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.output.find("marker=missing"), std::string::npos) << result.output;
  const double status = field(result.output, "status"), elapsed = field(result.output, "elapsed_ms") / 1000;
  EXPECT_NE(status, 0) << result.output;
  EXPECT_GE(elapsed, 0) << result.output;
  EXPECT_LT(elapsed, kWatchdogSeconds + 10) << result.output;
  EXPECT_NE(result.output.find("watchdog: no step boundary reached in 3 s"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("of step 2"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("error on rank"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("in phase '"), std::string::npos) << result.output;
}

TEST_F(RunDirectorySafety, ASignalDuringStartUpExitsWithTheCheckpointAndStopStatus) {
  const std::string job = "TEMOE_STARTUP_PAUSE_SECONDS=60 " + command("early", 1, "--train.steps=5");
  const CommandResult result = run_until_marker(job, "pausing up to", "TERM", work_ / "early.log", work_ / "early.log");
  EXPECT_EQ(result.output.find("marker=missing"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("status=3 "), std::string::npos) << result.output;
  EXPECT_LT(field(result.output, "elapsed_ms") / 1000, 30.0) << result.output;
  EXPECT_NE(result.output.find("stopped by a signal during start-up"), std::string::npos) << result.output;
  // Nothing was trained or lost: the requeued job starts the run from the beginning.
  const CommandResult again = train("early", 1, "--train.steps=2");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(metrics("early").size(), 2u);
}

}  // namespace
}  // namespace temoe
