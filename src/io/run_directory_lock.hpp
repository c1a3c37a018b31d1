#pragma once
// One writer per run directory. Two jobs given the same RUN_DIR (a resubmitted requeued job, two
// array tasks) would otherwise delete each other's temporaries, rename over each other's
// checkpoints, prune them and replace metrics.jsonl under each other.
//
// The lock is an flock(2) on RUN_DIR/.lock, held by the writing rank from before the run directory
// is read until the process exits. The kernel releases it when the holder dies, however it dies, so
// a lock whose holder is gone is taken over (with a note naming the old holder). The file's text
// names the holder (host, pid, Slurm job, start time) so that a refused job can say who is in.
// flock is honoured across NFS clients on Linux (it is mapped to a POSIX byte-range lock there).
#include <filesystem>
#include <string>

namespace temoe {

struct RunDirectoryHolder {
  std::string host;
  long pid = 0;
  std::string job;    // SLURM_JOB_ID (and array task) or "none"
  std::string since;  // UTC start time, ISO 8601
};

class RunDirectoryLock {
 public:
  // Creates the directory if needed and takes the lock. A directory created here that holds nothing
  // but the lock when it is released (the job failed before writing anything) is removed again, so
  // a refused job leaves no output behind. Throws, naming the directory and the current
  // holder, when another process holds it. `notes` receives the take-over note for a stale lock.
  RunDirectoryLock(const std::filesystem::path& run_directory, std::ostream& notes);
  ~RunDirectoryLock();
  RunDirectoryLock(const RunDirectoryLock&) = delete;
  RunDirectoryLock& operator=(const RunDirectoryLock&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int descriptor_ = -1;
  bool created_directory_ = false;  // removed again on release if the lock is all it holds
};

// This process as a holder: host name, pid, Slurm job and the time now.
RunDirectoryHolder current_holder();
std::string describe(const RunDirectoryHolder& holder);

// "<host>-<pid>": the suffix of temporary file names, so that two writers on two hosts never share
// a temporary even where a lock is not honoured.
std::string temporary_suffix();

}  // namespace temoe
