// temoe train's checkpoints end to end on a tiny random model: N + N steps with a stop between give
// the same metrics lines and the same controller.h5 bytes as 2N in one go (1 and 2 ranks); a
// checkpoint written by 2 ranks resumes on 1; SIGTERM / SIGUSR1 under mpirun stop every rank after
// one checkpoint with exit status 3, and the resumed run ends where an uninterrupted one does; kill -9
// of the whole job at random instants, many times, never leaves it without a loadable checkpoint; a
// checkpoint of another controller shape is refused; the expert placement is saved with the checkpoint,
// `temoe inspect` prints it, a resume without parallel.placement applies it (and equals an
// uninterrupted run bit for bit), and a different explicit placement is refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "src/learner/controller_file.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"
#include "tests/support/numeric_bounds.hpp"
#include "src/model/model_config.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::run_shell_command;
using testing::shell_quote;

using testing::kBinary;
using testing::kMpirun;
constexpr int kCheckpointAndExitCode = 3;  // temoe train's status after a signal (see temoe train --help)

class CheckpointResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = fs::temp_directory_path() / ("temoe-e2e-ckpt-" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    for (const std::string& command :
         {kBinary + " make-data --out " + shell_quote(work_ / "data.h5") + " --seed 1 --data.documents=60",
          kBinary + " init-model --arch mixtral --preset tiny --seed 3 --out " + shell_quote(work_ / "model")}) {
      const auto result = run_shell_command(command);
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(work_); }

  static std::string command(const std::string& name, int ranks, const std::string& extra) {
    const bool own_k_hat = extra.find("--controller.k_hat=") != std::string::npos;
    const std::string program = kBinary + " train --model " + shell_quote(work_ / "model") + " --data.path=" +
                                shell_quote(work_ / "data.h5") + " --run-dir " + shell_quote(work_ / name) +
                                (own_k_hat ? "" : " --controller.k_hat=4") +
                                " --train.sequence_length=32 --train.batch_size=4"
                                " --train.learning_rate=3e-3 --train.log_every=1000 " + extra;
    return ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
  }

  static CommandResult train(const std::string& name, int ranks, const std::string& extra) {
    return run_shell_command(command(name, ranks, extra), std::chrono::seconds(300));
  }

  // The metrics lines of a run, without the wall-clock figure.
  static std::vector<nlohmann::json> metrics(const std::string& name) {
    std::vector<nlohmann::json> lines;
    std::ifstream stream(work_ / name / "metrics.jsonl");
    for (std::string line; std::getline(stream, line);) {
      lines.push_back(nlohmann::json::parse(line));
      lines.back().erase("tokens_per_s");
    }
    return lines;
  }

  static std::string file_bytes(const fs::path& path) {
    std::ifstream stream(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(stream), {});
  }

  static std::string latest(const std::string& name) {
    std::ifstream stream(work_ / name / "latest");
    std::string text;
    std::getline(stream, text);
    return text;
  }

  static void expect_identical_runs(const std::string& a, const std::string& b) {
    const auto first = metrics(a), second = metrics(b);
    ASSERT_EQ(first.size(), second.size()) << a << " vs " << b;
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_EQ(first[i]["step"].get<int64_t>(), static_cast<int64_t>(i)) << b;
      EXPECT_EQ(first[i].dump(), second[i].dump()) << a << " vs " << b << ", step " << i;
    }
    const std::string bytes = file_bytes(work_ / a / "controller.h5");
    ASSERT_FALSE(bytes.empty());
    EXPECT_TRUE(bytes == file_bytes(work_ / b / "controller.h5")) << a << " vs " << b << ": controller.h5 differs";
  }

  static fs::path work_;
};

fs::path CheckpointResume::work_;

TEST_F(CheckpointResume, NPlusNStepsEqual2NStepsBitForBit) {
  constexpr int kN = 3;
  for (int ranks : {1, 2}) {
    const std::string suffix = "-np" + std::to_string(ranks);
    const std::string steps = " --train.steps=" + std::to_string(2 * kN);
    auto result = train("straight" + suffix, ranks, steps);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    result = train("split" + suffix, ranks, "--train.steps=" + std::to_string(kN));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(latest("split" + suffix), "ckpt-" + std::to_string(kN) + ".h5");
    // A crash after the checkpoint may have logged later steps: they are dropped on resume.
    {
      std::ofstream stream(work_ / ("split" + suffix) / "metrics.jsonl", std::ios::app);
      stream << R"({"step": )" << kN << R"(, "reward": 123})" << "\n" << R"({"step": )";  // and a torn line
    }
    result = train("split" + suffix, ranks, "--resume" + steps);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("resuming from"), std::string::npos) << result.output;
    expect_identical_runs("straight" + suffix, "split" + suffix);
  }
}

TEST_F(CheckpointResume, ResumeIsAutomaticAndOldCheckpointsAreDeleted) {
  auto result = train("auto", 1, "--train.steps=4 --train.checkpoint_every=1 --train.keep_checkpoints=2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  int count = 0;
  for (const auto& entry : fs::directory_iterator(work_ / "auto")) count += entry.path().extension() == ".h5" &&
                                                                            entry.path().filename() != "controller.h5";
  EXPECT_EQ(count, 2);
  EXPECT_EQ(latest("auto"), "ckpt-4.h5");
  // No --resume: the run directory's checkpoint is picked up all the same.
  result = train("auto", 1, "--train.steps=6 --train.checkpoint_every=1 --train.keep_checkpoints=2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("at step 4"), std::string::npos) << result.output;
  EXPECT_EQ(metrics("auto").size(), 6u);
  // --resume with nothing to resume is an error.
  result = train("empty", 1, "--train.steps=2 --resume");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("no checkpoint"), std::string::npos) << result.output;
}

TEST_F(CheckpointResume, AnotherControllerShapeIsRefused) {
  auto result = train("shape", 1, "--train.steps=1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = train("shape", 1, "--train.steps=2 --controller.hidden=16");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("ckpt-1.h5"), std::string::npos) << result.output;
  EXPECT_EQ(metrics("shape").size(), 1u);
}

// Controllers are replicated, so a checkpoint of 2 ranks loads on 1: the parameters, AdamW moments
// and step come back exactly; the following steps agree with a 2-rank run to the training
// reassociation bound of numeric_bounds.hpp (sums over ranks are added in another order, and the
// frozen model's GEMMs see other row counts), counted from the resume.
TEST_F(CheckpointResume, TwoRankCheckpointResumesOnOneRank) {
  auto result = train("ws-2", 2, "--train.steps=3");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Resuming with nothing left to do writes controller.h5 from the restored parameters: exact.
  result = train("ws-2", 1, "--train.steps=3");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("at step 3 (written by 2 ranks, now 1)"), std::string::npos) << result.output;
  result = train("ws-straight", 2, "--train.steps=3");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(read_controller_values(work_ / "ws-2" / "controller.h5"),
            read_controller_values(work_ / "ws-straight" / "controller.h5"));

  result = train("ws-2", 1, "--train.steps=6");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = train("ws-straight", 2, "--train.steps=6");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto resumed = metrics("ws-2"), straight = metrics("ws-straight");
  ASSERT_EQ(resumed.size(), 6u);
  ASSERT_EQ(straight.size(), 6u);
  const auto shape = testing::forward_shape(ModelConfig::from_file(work_ / "model" / "config.json"), 32);
  const int64_t tokens_per_step = 4 * 32, resumed_at = 3;
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i]["step"].get<int64_t>(), static_cast<int64_t>(i));
    EXPECT_EQ(resumed[i]["tokens"], straight[i]["tokens"]);
    const int64_t updates_since_resume = static_cast<int64_t>(i) - resumed_at;
    for (const char* key : {"reward", "kl", "gradient_norm"}) {
      const double a = resumed[i][key].get<double>(), b = straight[i][key].get<double>();
      if (updates_since_resume < 0) {
        EXPECT_EQ(a, b) << key << " at step " << i << " (both logged by the 2-rank runs)";
      } else {
        const double bound = testing::figure_after_updates_bound(shape, tokens_per_step, updates_since_resume);
        EXPECT_NEAR(a, b, bound * std::max(1.0, std::fabs(a))) << key << " at step " << i;
      }
    }
  }
  const double parameter_bound =
      testing::training_reassociation_bound(shape, tokens_per_step, static_cast<int64_t>(resumed.size()) - resumed_at);
  const auto one = read_controller_values(work_ / "ws-2" / "controller.h5");
  const auto two = read_controller_values(work_ / "ws-straight" / "controller.h5");
  ASSERT_EQ(one.size(), two.size());
  for (const auto& [name, values] : one) {
    const auto& other = two.at(name);
    ASSERT_EQ(values.size(), other.size()) << name;
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_NEAR(values[i], other[i], parameter_bound * std::max(1.0f, std::fabs(values[i]))) << name << "[" << i << "]";
    }
  }
}

// Under mpirun -np 2: SIGTERM (twice, the second during the save) sent to the ranks, then SIGUSR1 sent to
// mpirun (Open MPI forwards it), each after a checkpoint appears; both runs stop with status 3 after
// one checkpoint; the third run finishes; the end equals an uninterrupted run bit for bit.
TEST_F(CheckpointResume, SignalsStopAllRanksAfterACheckpointAndTheRunResumesExactly) {
  const std::string options = "--train.steps=60 --train.checkpoint_every=3";
  auto result = train("signal-straight", 2, options);
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const fs::path directory = work_ / "signal";
  const auto interrupt = [&](const std::string& signal_command) {
    const fs::path script = work_ / "interrupt.sh";
    {
      std::ofstream stream(script);
      stream << command("signal", 2, options) << " &\n"
             << "pid=$!\n"
             << "before=$(cat " << shell_quote(directory / "latest") << " 2> /dev/null || true)\n"
             << "for i in $(seq 3000); do\n"
             << "  now=$(cat " << shell_quote(directory / "latest") << " 2> /dev/null || true)\n"
             << "  [[ -n $now && $now != \"$before\" ]] && break\n"
             << "  sleep 0.02\n"
             << "done\n"
             << signal_command << "\n"
             << "wait $pid\n";
    }
    return run_shell_command("bash " + shell_quote(script), std::chrono::seconds(300));
  };
  // The ranks are mpirun's children (Open MPI 4 starts local ranks itself).
  result = interrupt("ranks=$(pgrep -P $pid); kill -TERM $ranks; sleep 0.05; kill -TERM $ranks 2> /dev/null || true");
  ASSERT_EQ(result.exit_code, kCheckpointAndExitCode) << result.output;
  EXPECT_NE(result.output.find("stopped by a signal"), std::string::npos) << result.output;
  const std::string first_stop = latest("signal");
  result = interrupt("kill -USR1 $pid");
  ASSERT_EQ(result.exit_code, kCheckpointAndExitCode) << result.output;
  EXPECT_NE(latest("signal"), first_stop);
  EXPECT_NE(latest("signal"), "ckpt-60.h5");
  EXPECT_FALSE(fs::exists(directory / "controller.h5"));

  result = train("signal", 2, options);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(latest("signal"), "ckpt-60.h5");
  expect_identical_runs("signal-straight", "signal");
}

// Expert placements (2 ranks: ep_size 2 over the tiny model's 8 experts). With a communication cost
// the learner prices held masks on the placement, so a run that silently lost it trains to other
// numbers; masks of k_hat = top_k = 2 experts (not 4) often lie on one rank, so the cost does vary.
const std::string kPlacement = "[1, 0, 1, 0, 0, 1, 1, 0]";
const std::string kOtherPlacement = "[0, 1, 0, 1, 1, 0, 0, 1]";
const std::string kPricedOnPlacement = " --controller.k_hat=2 --controller.communication_cost=0.5";

std::string write_placement(const fs::path& file, const std::string& owners) {
  std::ofstream(file) << R"({"ep_size": 2, "owners": )" << owners << "}\n";
  return " --parallel.placement=" + shell_quote(file);
}

TEST_F(CheckpointResume, CheckpointRecordsThePlacementAndInspectPrintsIt) {
  const std::string placement = write_placement(work_ / "placement-a.json", kPlacement);
  auto result = train("placed", 2, "--train.steps=1" + placement);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const fs::path file = work_ / "placed" / "ckpt-1.h5", json = work_ / "placed-inspect.json";
  result = run_shell_command(kBinary + " inspect " + shell_quote(file) + " --json " + shell_quote(json));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("expert placement ep_size 2, owners " + kPlacement), std::string::npos) << result.output;
  const auto report = nlohmann::json::parse(std::ifstream(json));
  EXPECT_EQ(report["expert_placement"], nlohmann::json::parse(R"({"ep_size": 2, "owners": )" + kPlacement + "}"))
      << report.dump();
  // Without an expert-parallel group there is nothing to record.
  result = train("unplaced", 1, "--train.steps=1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = run_shell_command(kBinary + " inspect " + shell_quote(work_ / "unplaced" / "ckpt-1.h5"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("expert placement"), std::string::npos) << result.output;
}

TEST_F(CheckpointResume, ResumeWithoutPlacementAppliesTheStoredOneBitForBit) {
  const std::string placement = write_placement(work_ / "placement-b.json", kPlacement);
  auto result = train("placed-straight", 2, "--train.steps=4" + kPricedOnPlacement + placement);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = train("placed-split", 2, "--train.steps=2" + kPricedOnPlacement + placement);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = train("placed-split", 2, "--train.steps=4" + kPricedOnPlacement);  // no --parallel.placement
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("applying its expert placement {\"ep_size\":2,\"owners\":[1,0,1,0,0,1,1,0]}"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("changed since the checkpoint: parallel.placement"), std::string::npos) << result.output;
  expect_identical_runs("placed-straight", "placed-split");
  const auto inspected = run_shell_command(kBinary + " inspect " + shell_quote(work_ / "placed-split" / "ckpt-4.h5"));
  EXPECT_NE(inspected.output.find("owners " + kPlacement), std::string::npos) << inspected.output;
  // The test can tell: the contiguous placement trains to other numbers.
  result = train("contiguous-straight", 2, "--train.steps=4" + kPricedOnPlacement);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(metrics("contiguous-straight").back().dump(), metrics("placed-straight").back().dump());
}

TEST_F(CheckpointResume, AnotherExplicitPlacementIsRefusedAndAnotherEpSizeKeepsItsOwn) {
  const std::string placement = write_placement(work_ / "placement-c.json", kPlacement);
  const std::string other = write_placement(work_ / "other-placement.json", kOtherPlacement);
  auto result = train("conflict", 2, "--train.steps=1" + placement);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = train("conflict", 2, "--train.steps=2" + other);
  EXPECT_NE(result.exit_code, 0) << result.output;
  for (const std::string& text : {(work_ / "conflict" / "ckpt-1.h5").string() + ": key /expert_placement holds the expert "
                                                                                 "placement {\"ep_size\":2,\"owners\":[1,0,1,0,0,1,1,0]}",
                                  "parallel.placement = " + (work_ / "other-placement.json").string() +
                                      " gives {\"ep_size\":2,\"owners\":[0,1,0,1,1,0,0,1]}"}) {
    EXPECT_NE(result.output.find(text), std::string::npos) << text << "\n" << result.output;
  }
  EXPECT_EQ(metrics("conflict").size(), 1u);
  EXPECT_EQ(latest("conflict"), "ckpt-1.h5");
  // On one rank (ep_size 1) the stored placement does not fit: the run goes on without it and says so.
  result = train("conflict", 1, "--train.steps=2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("at step 1 (written by 2 ranks, now 1); its expert placement (ep_size 2) is not "
                               "applied: this run has ep_size 1"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(metrics("conflict").size(), 2u);
}

// Sends SIGKILL to every process whose command line mentions `text` (mpirun and its ranks), so that
// nothing of a killed job keeps running, whatever process groups Open MPI put its ranks in.
// Returns how many there were.
int kill_processes_mentioning(const std::string& text) {
  int killed = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stream(entry.path() / "cmdline", std::ios::binary);
    const std::string command_line(std::istreambuf_iterator<char>(stream), {});
    if (command_line.find(text) != std::string::npos && std::stoi(name) != ::getpid()) {
      killed += ::kill(std::stoi(name), SIGKILL) == 0;
    }
  }
  return killed;
}

// kill -9 of the whole job (mpirun, both ranks) at random instants while it checkpoints every step
// (within 60 ms after it committed a new checkpoint, so that kills land in steps and saves however slow start-up is),
// many times over: after every kill the checkpoint `latest` names loads and verifies and is never
// older than before; then the run is finished and must equal an uninterrupted one bit for bit.
TEST_F(CheckpointResume, KillNineOfTheWholeJobNeverLosesTheLatestCheckpoint) {
  constexpr int kKills = 12;
  // Enough steps that twelve kills cannot reach the end on a fast machine: each kill lets the run
  // go on for at most 60 ms after a checkpoint (a few steps at ~10 ms each here), and 400 steps are
  // left far from the end even at a step per millisecond.
  constexpr int kSteps = 400;
  const std::string options =
      "--train.steps=" + std::to_string(kSteps) + " --train.checkpoint_every=1 --train.keep_checkpoints=2";
  auto result = train("kill-straight", 2, options);
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const fs::path directory = work_ / "kill";
  std::mt19937 random(20261125);
  std::uniform_int_distribution<int> delay_ms(0, 60);
  int64_t last_step = 0;
  int kills_with_checkpoint = 0, stragglers = 0;
  for (int kill = 0; kill < kKills; ++kill) {
    const std::string job = command("kill", 2, options);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setsid();  // its own process group: the kill below reaches mpirun and everything it started
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
      ::execl("/bin/bash", "bash", "-c", job.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Start-up (mpirun, two ranks, the model) takes seconds on a loaded machine: wait for the run
    // to commit a new checkpoint, then kill at a random instant of the steps and saves after it.
    const std::string before = latest("kill");
    int status = 0;
    pid_t ended = 0;
    for (int poll = 0; poll < 3000 && latest("kill") == before && ended == 0; ++poll) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ended = ::waitpid(pid, &status, WNOHANG);
    }
    if (ended == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
      ::kill(-pid, SIGKILL);
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    }
    stragglers += kill_processes_mentioning(directory.string());
    if (WIFEXITED(status)) {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "kill " << kill << ": the run failed by itself; run: " << job;
      break;  // it finished before the kill: nothing left to interrupt
    }
    if (!fs::exists(directory / "latest")) continue;  // killed before the first checkpoint
    const std::string name = latest("kill");
    const auto inspected = run_shell_command(kBinary + " inspect " + shell_quote(directory / name));
    ASSERT_EQ(inspected.exit_code, 0) << "after kill " << kill << ", " << name << " does not verify:\n"
                                      << inspected.output;
    const int64_t step = std::stoll(name.substr(5, name.size() - 8));  // ckpt-<step>.h5
    EXPECT_GE(step, last_step) << "after kill " << kill;
    last_step = step;
    ++kills_with_checkpoint;
  }
  std::cout << kKills << " kills, " << kills_with_checkpoint << " after a checkpoint (last: step " << last_step
            << "), " << stragglers << " processes outlived their process group's SIGKILL\n";
  EXPECT_GE(kills_with_checkpoint, kKills / 2) << "too few kills landed after a checkpoint to test anything";
  EXPECT_LT(last_step, kSteps);

  result = train("kill", 2, options);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_identical_runs("kill-straight", "kill");
}

}  // namespace
}  // namespace temoe
