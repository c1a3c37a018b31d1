#pragma once
// A watchdog per rank for temoe train: a rank that reaches no step boundary within the limit ends
// the whole job, naming itself, the phase it was in and the step. Without it a stuck (not dead)
// rank stalls every other rank in the next collective until the scheduler's time limit, and a USR1
// sent before that limit is never acted on.
//
// The watchdog ends its own process with _exit; mpirun (or srun --kill-on-bad-exit) then ends the
// others, which are blocked in a collective with this rank and cannot take part in an agreement.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace temoe::launch {

inline constexpr int kWatchdogExitCode = 4;

class StepWatchdog {
 public:
  // limit 0 disables the watchdog.
  StepWatchdog(std::chrono::seconds limit, int rank);
  ~StepWatchdog();
  StepWatchdog(const StepWatchdog&) = delete;
  StepWatchdog& operator=(const StepWatchdog&) = delete;

  // A step boundary: the clock starts again.
  void boundary(int64_t step);
  // What the rank does now, for the message (a string literal: only its address is kept).
  void phase(const char* name) { phase_.store(name); }

 private:
  void watch();

  std::chrono::seconds limit_;
  int rank_;
  std::atomic<int64_t> step_{-1};
  std::atomic<const char*> phase_{"start-up"};
  std::atomic<int64_t> last_boundary_nanoseconds_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace temoe::launch
