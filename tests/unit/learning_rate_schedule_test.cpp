// Learning-rate schedules against values worked out by hand.
#include <gtest/gtest.h>

#include "optim/learning_rate_schedule.hpp"
#include "src/core/error.hpp"

namespace temoe {
namespace {

TEST(LearningRateSchedule, WarmupThenCosineToMinimum) {
  // peak 1.0, minimum 0.1, 4 warm-up steps, cosine over steps 4..12 (8 steps).
  const LearningRateSchedule schedule({ScheduleKind::cosine, 1.0, 0.1, 4, 12});
  EXPECT_DOUBLE_EQ(schedule.at(0), 0.25);
  EXPECT_DOUBLE_EQ(schedule.at(1), 0.5);
  EXPECT_DOUBLE_EQ(schedule.at(3), 1.0);
  EXPECT_DOUBLE_EQ(schedule.at(4), 1.0);                 // cos(0) = 1: the peak
  EXPECT_NEAR(schedule.at(6), 0.1 + 0.45 * (1.0 + 0.7071067811865476), 1e-15);  // a quarter: cos(pi/4)
  EXPECT_NEAR(schedule.at(8), 0.55, 1e-15);              // half way: cos(pi/2) = 0, the mean
  EXPECT_NEAR(schedule.at(10), 0.1 + 0.45 * (1.0 - 0.7071067811865476), 1e-15);
  EXPECT_DOUBLE_EQ(schedule.at(12), 0.1);                // the end: the minimum
  EXPECT_DOUBLE_EQ(schedule.at(1000), 0.1);              // and it stays there
}

TEST(LearningRateSchedule, CosineWithoutWarmupStartsAtPeak) {
  const LearningRateSchedule schedule({ScheduleKind::cosine, 2e-3, 0.0, 0, 2});
  EXPECT_DOUBLE_EQ(schedule.at(0), 2e-3);
  EXPECT_NEAR(schedule.at(1), 1e-3, 1e-18);
  EXPECT_DOUBLE_EQ(schedule.at(2), 0.0);
}

TEST(LearningRateSchedule, ConstantWithAndWithoutWarmup) {
  const LearningRateSchedule flat({ScheduleKind::constant, 3e-4, 0.0, 0, 1});
  EXPECT_DOUBLE_EQ(flat.at(0), 3e-4);
  EXPECT_DOUBLE_EQ(flat.at(123456), 3e-4);
  const LearningRateSchedule warm({ScheduleKind::constant, 1.0, 0.0, 2, 1});
  EXPECT_DOUBLE_EQ(warm.at(0), 0.5);
  EXPECT_DOUBLE_EQ(warm.at(1), 1.0);
  EXPECT_DOUBLE_EQ(warm.at(2), 1.0);
}

TEST(LearningRateSchedule, NamesAndRefusals) {
  EXPECT_EQ(parse_schedule_kind("constant"), ScheduleKind::constant);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::cosine);
  EXPECT_EQ(to_string(ScheduleKind::cosine), "cosine");
  EXPECT_THROW(parse_schedule_kind("linear"), Error);
  EXPECT_THROW(LearningRateSchedule({ScheduleKind::cosine, 1.0, 2.0, 0, 10}), Error);  // minimum > peak
  EXPECT_THROW(LearningRateSchedule({ScheduleKind::cosine, 1.0, 0.0, 10, 10}), Error);  // no decay steps
  EXPECT_THROW(LearningRateSchedule({ScheduleKind::constant, 1.0, 0.0, 0, 1}).at(-1), Error);
}

}  // namespace
}  // namespace temoe
