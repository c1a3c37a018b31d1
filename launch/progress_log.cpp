#include "launch/progress_log.hpp"

#include <cstdio>

#include "src/core/error.hpp"

namespace temoe::launch {

ProgressLog::ProgressLog(const std::filesystem::path& metrics_file, bool fresh, int64_t total_steps, int64_t print_every)
    : stream_(metrics_file, fresh ? std::ios::trunc : std::ios::app),
      total_steps_(total_steps),
      print_every_(std::max<int64_t>(print_every, 1)),
      start_(std::chrono::steady_clock::now()) {
  if (!stream_) TEMOE_FAIL(metrics_file.string() << ": cannot open for writing");
}

void ProgressLog::record(int64_t step, const nlohmann::json& metrics, int64_t tokens, double switch_rate, double kl) {
  stream_ << metrics.dump() << "\n";
  stream_.flush();
  if (first_step_ < 0) first_step_ = step;
  tokens_since_start_ += tokens;
  const bool last = step + 1 == total_steps_;
  if ((step + 1) % print_every_ != 0 && !last) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double steps_done = static_cast<double>(step + 1 - first_step_);
  const double eta = elapsed / steps_done * static_cast<double>(total_steps_ - step - 1);
  std::printf("step %6lld/%lld  tokens/s %9.1f  switch %6.2f%%  KL %.4f  ETA %s\n", static_cast<long long>(step + 1),
              static_cast<long long>(total_steps_), static_cast<double>(tokens_since_start_) / elapsed,
              100.0 * switch_rate, kl,
              [&] {
                char text[32];
                std::snprintf(text, sizeof(text), "%dm%02ds", static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
                return std::string(text);
              }().c_str());
  std::fflush(stdout);
}

}  // namespace temoe::launch
