#include "launch/step_watchdog.hpp"

#include <unistd.h>

#include <cstdio>

namespace temoe::launch {

namespace {

int64_t now_nanoseconds() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

StepWatchdog::StepWatchdog(std::chrono::seconds limit, int rank) : limit_(limit), rank_(rank) {
  last_boundary_nanoseconds_.store(now_nanoseconds());
  if (limit_.count() > 0) thread_ = std::thread([this] { watch(); });
}

StepWatchdog::~StepWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StepWatchdog::boundary(int64_t step) {
  step_.store(step);
  last_boundary_nanoseconds_.store(now_nanoseconds());
}

void StepWatchdog::watch() {
  const int64_t limit_nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(limit_).count();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // Checked twice a second or so: the job ends within the limit plus well under a second.
    wake_.wait_for(lock, std::chrono::milliseconds(250));
    if (stopping_) break;
    const int64_t waited = now_nanoseconds() - last_boundary_nanoseconds_.load();
    if (waited < limit_nanoseconds) continue;
    // Only async-signal-safe-enough calls from here: the main thread may hold any lock.
    std::fprintf(stderr,
                 "temoe: error on rank %d: watchdog: no step boundary reached in %lld s (train.watchdog_seconds), "
                 "in phase '%s' of step %lld; ending the job\n",
                 rank_, static_cast<long long>(limit_.count()), phase_.load(), static_cast<long long>(step_.load()));
    std::fflush(stderr);
    ::_exit(kWatchdogExitCode);
  }
}

}  // namespace temoe::launch
