#pragma once
// Learning-rate schedules: constant, or linear warm-up followed by a cosine decay to a minimum
// (Loshchilov & Hutter 2017, SGDR, without restarts). Both may start with a linear warm-up.
#include <cstdint>
#include <string>

namespace temoe {

enum class ScheduleKind { constant, cosine };

struct LearningRateScheduleConfig {
  ScheduleKind kind = ScheduleKind::cosine;
  double peak = 1e-4;         // value after warm-up (the constant value for kind constant)
  double minimum = 0.0;       // value reached at total_steps by the cosine decay
  int64_t warmup_steps = 0;   // steps of linear warm-up; step s < warmup gets peak * (s + 1) / warmup
  int64_t total_steps = 1;    // steps until the cosine reaches `minimum` (it stays there afterwards)
};

// "constant" or "cosine"; anything else throws with the accepted names.
ScheduleKind parse_schedule_kind(const std::string& name);
std::string to_string(ScheduleKind kind);

class LearningRateSchedule {
 public:
  explicit LearningRateSchedule(LearningRateScheduleConfig config);

  // The learning rate of update number `step` (0 for the first update).
  double at(int64_t step) const;
  const LearningRateScheduleConfig& config() const { return config_; }

 private:
  LearningRateScheduleConfig config_;
};

}  // namespace temoe
