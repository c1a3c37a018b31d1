// The sampled rollout's next-token draw on a 4-token vocabulary, against hand computation: which
// token a uniform picks, the importance weight p_student / p_mix, and the frequencies of many keyed
// draws against the mixture.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/learner/mixture_sampling.hpp"

namespace temoe {
namespace {

// Logits whose softmax is exactly `probabilities` up to rounding.
std::vector<float> logits_of(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

const std::vector<double> kStudent = {0.5, 0.3, 0.15, 0.05};
const std::vector<double> kTeacher = {0.1, 0.1, 0.2, 0.6};
// 0.8 * student + 0.2 * teacher.
const std::vector<double> kMixture = {0.42, 0.26, 0.16, 0.16};

TEST(MixtureSampling, AUniformPicksTheTokenOfTheMixturesCdfWithItsWeight) {
  const auto student = logits_of(kStudent), teacher = logits_of(kTeacher);
  // CDF of the mixture: 0.42, 0.68, 0.84, 1.
  const std::vector<std::pair<double, int32_t>> cases = {{0.01, 0}, {0.41, 0}, {0.43, 1}, {0.67, 1},
                                                         {0.69, 2}, {0.83, 2}, {0.85, 3}, {0.999, 3}};
  for (const auto& [uniform, token] : cases) {
    const MixtureDraw draw = draw_from_mixture(student, teacher, 0.2, uniform);
    ASSERT_EQ(draw.token, token) << "uniform " << uniform;
    const auto i = static_cast<size_t>(token);
    EXPECT_NEAR(draw.student_probability, kStudent[i], 1e-7);
    EXPECT_NEAR(draw.teacher_probability, kTeacher[i], 1e-7);
    EXPECT_NEAR(draw.mixture_probability, kMixture[i], 1e-7);
    EXPECT_NEAR(draw.importance_weight, kStudent[i] / kMixture[i], 1e-6);
    // The weight is exactly the ratio of the probabilities the draw reports.
    EXPECT_EQ(draw.importance_weight, draw.student_probability / draw.mixture_probability);
  }
  // Without the teacher the draw is the student's own: weight 1.
  for (double uniform : {0.1, 0.5, 0.9}) {
    EXPECT_DOUBLE_EQ(draw_from_mixture(student, teacher, 0.0, uniform).importance_weight, 1.0);
  }
}

TEST(MixtureSampling, KeyedDrawsFollowTheMixtureAndWeightsRecoverTheStudent) {
  const auto student = logits_of(kStudent), teacher = logits_of(kTeacher);
  const int draws = 40000;
  std::vector<double> counts(4, 0), weighted(4, 0);
  for (int i = 0; i < draws; ++i) {
    CounterRandom random(9, {0, static_cast<uint64_t>(i), 0, 0, 3});
    const MixtureDraw draw = draw_from_mixture(student, teacher, 0.2, random.uniform());
    counts[static_cast<size_t>(draw.token)] += 1;
    weighted[static_cast<size_t>(draw.token)] += draw.importance_weight;
  }
  for (size_t token = 0; token < 4; ++token) {
    // Frequencies within 5 standard errors of the mixture; importance-weighted frequencies estimate
    // the student's own distribution (the point of the weight).
    const double p = kMixture[token], sigma = std::sqrt(p * (1 - p) / draws);
    EXPECT_NEAR(counts[token] / draws, p, 5 * sigma) << "token " << token;
    const double weight = kStudent[token] / p, weighted_sigma = weight * sigma;
    EXPECT_NEAR(weighted[token] / draws, kStudent[token], 5 * weighted_sigma) << "token " << token;
  }
}

TEST(MixtureSampling, RefusesBadArguments) {
  const auto student = logits_of(kStudent), teacher = logits_of(kTeacher);
  EXPECT_THROW(draw_from_mixture(student, teacher, 1.5, 0.5), std::exception);
  EXPECT_THROW(draw_from_mixture(student, teacher, 0.2, 0.0), std::exception);
  EXPECT_THROW(draw_from_mixture(student, std::span<const float>(teacher).first(3), 0.2, 0.5), std::exception);
}

}  // namespace
}  // namespace temoe
