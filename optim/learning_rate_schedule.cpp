#include "optim/learning_rate_schedule.hpp"

#include <cmath>
#include <numbers>

#include "src/core/error.hpp"

namespace temoe {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::constant;
  if (name == "cosine") return ScheduleKind::cosine;
  TEMOE_FAIL("unknown learning-rate schedule '" << name << "' (expected: constant or cosine)");
}

std::string to_string(ScheduleKind kind) { return kind == ScheduleKind::constant ? "constant" : "cosine"; }

LearningRateSchedule::LearningRateSchedule(LearningRateScheduleConfig config) : config_(config) {
  TEMOE_CHECK(config_.peak >= 0.0, "learning-rate schedule: peak " << config_.peak << " is negative");
  TEMOE_CHECK(config_.warmup_steps >= 0, "learning-rate schedule: warmup_steps " << config_.warmup_steps << " is negative");
  if (config_.kind == ScheduleKind::cosine) {
    TEMOE_CHECK(config_.minimum >= 0.0 && config_.minimum <= config_.peak,
                "learning-rate schedule: minimum " << config_.minimum << " is not in [0, peak " << config_.peak << "]");
    TEMOE_CHECK(config_.total_steps > config_.warmup_steps,
                "learning-rate schedule: total_steps " << config_.total_steps << " must exceed warmup_steps "
                                                       << config_.warmup_steps);
  }
}

double LearningRateSchedule::at(int64_t step) const {
  TEMOE_CHECK(step >= 0, "learning-rate schedule: step " << step << " is negative");
  // Warm-up starts at peak / warmup rather than 0, so that the first update is not wasted.
  if (step < config_.warmup_steps) {
    return config_.peak * static_cast<double>(step + 1) / static_cast<double>(config_.warmup_steps);
  }
  if (config_.kind == ScheduleKind::constant) return config_.peak;
  if (step >= config_.total_steps) return config_.minimum;
  const double progress = static_cast<double>(step - config_.warmup_steps) /
                          static_cast<double>(config_.total_steps - config_.warmup_steps);
  return config_.minimum + 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) * (config_.peak - config_.minimum);
}

}  // namespace temoe
