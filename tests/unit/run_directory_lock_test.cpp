// One writer per run directory (run_directory_lock.hpp): a second holder is refused naming the
// first, a clean release leaves nothing to report, and the lock of a holder that died is taken over
// with a note naming it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "src/core/error.hpp"
#include "src/io/run_directory_lock.hpp"
#include "tests/support/scratch_directory_test.hpp"

namespace temoe {
namespace {

class RunDirectoryLockTest : public testing::ScratchDirectoryTest {
 protected:
  std::filesystem::path run() const { return directory_ / "run"; }
};

TEST_F(RunDirectoryLockTest, ASecondHolderIsRefusedNamingTheFirst) {
  std::ostringstream notes;
  RunDirectoryLock first(run(), notes);
  EXPECT_TRUE(std::filesystem::exists(run() / ".lock"));
  // flock conflicts between two open descriptions of the file, also inside one process.
  try {
    RunDirectoryLock second(run(), notes);
    ADD_FAILURE() << "a second writer took the lock";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(run().string() + " is in use by another job"), std::string::npos) << message;
    const RunDirectoryHolder self = current_holder();
    EXPECT_NE(message.find("host " + self.host + ", pid " + std::to_string(self.pid)), std::string::npos) << message;
    EXPECT_NE(message.find("Slurm job"), std::string::npos) << message;
  }
  EXPECT_TRUE(notes.str().empty()) << notes.str();
}

TEST_F(RunDirectoryLockTest, ACleanReleaseLeavesNothingToTakeOver) {
  std::ostringstream notes;
  { RunDirectoryLock first(run(), notes); }
  RunDirectoryLock again(run(), notes);
  EXPECT_TRUE(notes.str().empty()) << notes.str();
}

TEST_F(RunDirectoryLockTest, TheLockOfAKilledHolderIsTakenOverWithANote) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::ostringstream ignored;
    RunDirectoryLock held(run(), ignored);
    const char byte = 1;
    if (::write(ready[1], &byte, 1) != 1) ::_exit(2);
    ::pause();  // until SIGKILL: the destructor never runs, the text stays
    ::_exit(0);
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  std::ostringstream notes;
  EXPECT_THROW(RunDirectoryLock(run(), notes), Error);  // held by the live child
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  RunDirectoryLock taken(run(), notes);
  EXPECT_NE(notes.str().find("taking over the lock of a job that is gone"), std::string::npos) << notes.str();
  EXPECT_NE(notes.str().find("pid " + std::to_string(child)), std::string::npos) << notes.str();
  std::ifstream text(run() / ".lock");
  std::string contents((std::istreambuf_iterator<char>(text)), {});
  EXPECT_NE(contents.find("pid " + std::to_string(::getpid())), std::string::npos) << contents;
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(RunDirectoryLockTest, TemporaryNamesCarryHostAndPid) {
  const std::string suffix = temporary_suffix();
  EXPECT_NE(suffix.find(current_holder().host), std::string::npos);
  EXPECT_TRUE(suffix.ends_with("-" + std::to_string(::getpid()))) << suffix;
}

}  // namespace
}  // namespace temoe
