// kill -9 at random instants: `temoe checkpoint-stress` commits checkpoints in a loop (resuming
// from the latest each time it starts) and is killed 30 times at random moments, during start-up,
// loading, writing, renaming or pruning. After every kill the latest checkpoint must load and
// verify completely, and the step must never go backwards. (A process kill leaves the page cache
// intact; power loss is what the fsyncs are for, and is not simulated here.)
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"
#include "tests/unit/checkpoint_test_support.hpp"

namespace temoe {
namespace {

using namespace checkpoint_testing;

class CheckpointKill : public ScratchDirectory {};

pid_t start_stress(const fs::path& run_directory) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    ::execl(TEMOE_BINARY, "temoe", "checkpoint-stress", "--run-dir", run_directory.c_str(), "--size-mb", "2", "--keep",
            "2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

TEST_F(CheckpointKill, LatestCheckpointLoadsAfterEveryKill) {
  const fs::path run = path("run");
  constexpr int kKills = 30;
  std::mt19937 random(20240611);
  std::uniform_int_distribution<int> delay_ms(20, 400);
  int verified = 0, mid_commit = 0;
  int64_t last_step = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int kill = 0; kill < kKills; ++kill) {
    const pid_t pid = start_stress(run);
    ASSERT_GT(pid, 0);
    // On a loaded machine start-up alone can outlast the delay: count it from the moment the
    // process has its run directory.
    for (int poll = 0; poll < 500 && !fs::exists(run); ++poll) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "checkpoint-stress ended by itself (status " << status << ") before the kill: run " << TEMOE_BINARY
        << " checkpoint-stress --run-dir " << run << " to see why";
    if (!fs::exists(run)) continue;  // killed before it created the run directory
    for (const auto& entry : fs::directory_iterator(run)) {
      if (entry.path().filename().string().find(".tmp-") != std::string::npos) {
        ++mid_commit;
        break;
      }
    }
    const auto loaded = load_latest_checkpoint(run, LoadOptions{});  // throws on any refusal
    if (!loaded) {
      EXPECT_EQ(last_step, 0) << "the run directory lost its checkpoints after kill " << kill;
      continue;
    }
    EXPECT_NO_THROW(verify_synthetic_checkpoint(loaded->checkpoint)) << "after kill " << kill;
    EXPECT_GE(loaded->checkpoint.step, last_step) << "the latest checkpoint went backwards after kill " << kill;
    last_step = loaded->checkpoint.step;
    ++verified;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ info     ] kill -9 loop: %d kills in %.1f s, latest checkpoint verified after %d of them, %d kills left "
              "a commit's temporary file behind, final step %lld\n",
              kKills, seconds, verified, mid_commit, static_cast<long long>(last_step));
  EXPECT_GE(verified, kKills - 3);  // only the first kills may come before the first commit
  EXPECT_GT(last_step, 1);  // the loop made progress between kills (how much depends on the machine's load)
  // The next start removes the temporaries that killed commits left.
  const CheckpointDirectory directory(run, 2);
  for (const auto& entry : fs::directory_iterator(run)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace temoe
