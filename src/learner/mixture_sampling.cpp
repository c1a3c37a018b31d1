#include "src/learner/mixture_sampling.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

namespace {
// softmax of one row in double.
std::vector<double> probabilities(std::span<const float> logits) {
  const double maximum = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp(double(logits[i]) - maximum);
    total += p[i];
  }
  for (double& value : p) value /= total;
  return p;
}
}  // namespace

MixtureDraw draw_from_mixture(std::span<const float> student_logits, std::span<const float> teacher_logits,
                              double teacher_mix, double uniform) {
  TEMOE_CHECK(!student_logits.empty() && student_logits.size() == teacher_logits.size(),
              "mixture draw: " << student_logits.size() << " student and " << teacher_logits.size() << " teacher logits");
  TEMOE_CHECK(teacher_mix >= 0 && teacher_mix <= 1, "mixture draw: teacher share " << teacher_mix << " is outside [0, 1]");
  TEMOE_CHECK(uniform > 0 && uniform < 1, "mixture draw: uniform " << uniform << " is outside (0, 1)");
  const std::vector<double> student = probabilities(student_logits), teacher = probabilities(teacher_logits);
  const auto mixture = [&](size_t i) { return (1.0 - teacher_mix) * student[i] + teacher_mix * teacher[i]; };
  // Inverse CDF; the last token with mass takes whatever rounding leaves above the running sum.
  size_t token = 0, last_with_mass = 0;
  double cumulative = 0;
  bool found = false;
  for (size_t i = 0; i < student.size(); ++i) {
    const double p = mixture(i);
    if (p <= 0) continue;
    last_with_mass = i;
    cumulative += p;
    if (uniform < cumulative) {
      token = i;
      found = true;
      break;
    }
  }
  if (!found) token = last_with_mass;
  MixtureDraw draw;
  draw.token = static_cast<int32_t>(token);
  draw.student_probability = student[token];
  draw.teacher_probability = teacher[token];
  draw.mixture_probability = mixture(token);
  draw.importance_weight = draw.student_probability / draw.mixture_probability;
  return draw;
}

}  // namespace temoe
