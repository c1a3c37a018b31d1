#pragma once
// Rank 0's progress line (step, tokens/s, switch rate, KL, ETA) and the per-run metrics.jsonl.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace temoe::launch {

class ProgressLog {
 public:
  // Appends to DIR/metrics.jsonl (truncates it when `fresh`); only the rank that writes opens it.
  ProgressLog(const std::filesystem::path& metrics_file, bool fresh, int64_t total_steps, int64_t print_every);

  // Writes one JSON line (flushed, so a crash loses at most the line being written) and, every
  // print_every steps and at the last one, prints the progress line to stdout.
  void record(int64_t step, const nlohmann::json& metrics, int64_t tokens, double switch_rate, double kl);

 private:
  std::ofstream stream_;
  int64_t total_steps_;
  int64_t print_every_;
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_ = -1;
  int64_t tokens_since_start_ = 0;
};

}  // namespace temoe::launch
