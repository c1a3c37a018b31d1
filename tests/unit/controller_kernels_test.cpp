// The row functions the CPU and the CUDA kernels share (src/learner/controller_math.hpp,
// controller_kernel_rows.hpp), checked on the host: the element-major weight-gradient functors
// that only the GPU launches, run here one index at a time, must give the host loops' bits (they
// add the same terms in the same order), and the selection helpers must agree with the standard
// algorithms they replace (partial_sort with ties, a sorted top-k mass, the initializer-list
// random streams).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/learner/controller_kernel_rows.hpp"
#include "src/learner/controller_kernels.hpp"
#include "src/learner/option_controller.hpp"
#include "src/learner/plackett_luce.hpp"
#include "src/learner/random_streams.hpp"
#include "tests/support/random_batch.hpp"

namespace temoe {
namespace {

constexpr int64_t kHidden = 12, kExperts = 8, kRows = 9;

std::vector<float> normals(int64_t count, uint64_t seed, double scale = 1.0) {
  CounterRandom random(seed, {});
  std::vector<float> values(static_cast<size_t>(count));
  for (float& value : values) value = static_cast<float>(scale * random.normal());
  return values;
}

template <typename Body>
void run_each(int64_t count, const Body& body) {
  for (int64_t i = 0; i < count; ++i) body(i);
}

struct Fixture {
  ParameterSet parameters;
  ControllerConfig config;
  std::unique_ptr<OptionController> controller;
  std::vector<float> hidden = normals(kRows * kHidden, 1), router_logits = normals(kRows * kExperts, 2, 2.0);
  std::vector<int32_t> masks;
  ControllerEvaluation evaluation;

  Fixture() {
    config.k_hat = 3;
    config.embedding_dim = 4;
    config.set_dim = 5;
    config.hidden = 7;
    controller = std::make_unique<OptionController>(parameters, 0, kHidden, kExperts, config, 5);
    testing::add_parameter_noise(parameters, 0.3, 6, [](const std::string& name) { return !is_value_statistic(name); });
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t m = 0; m < config.k_hat; ++m) masks.push_back(static_cast<int32_t>((r + 3 * m) % kExperts));
      std::sort(masks.end() - config.k_hat, masks.end());
    }
    evaluation = controller->evaluate(hidden, masks, kRows, router_logits);
  }

  controller_kernels::HeadArrays tape() {
    return {evaluation.beta.data(),     evaluation.q.data(),       evaluation.normed_set.data(), evaluation.set_norm_scale.data(),
            evaluation.coverage.data(), evaluation.termination_hidden.data(), evaluation.q_hidden.data()};
  }
};

TEST(ControllerKernels, ElementMajorHeadGradientsGiveTheHostLoopsBits) {
  Fixture setup;
  const controller_math::HeadWeights weights = setup.controller->head_weights();
  std::vector<float> d_beta = normals(kRows, 3), d_q = normals(kRows, 4);
  d_beta[2] = 0.0f;  // a row without termination gradient: skipped by both
  d_q[5] = 0.0f;
  std::vector<float> head(kRows * 2), pre(kRows * 2 * weights.width), set(kRows * weights.set_dim);
  const controller_kernels::HeadGradients gradients{head.data(), pre.data(), set.data()};
  controller_kernels::heads_backward(Device::cpu, weights, kRows, setup.tape(), d_beta.data(), d_q.data(), gradients);
  EXPECT_EQ(head[2 * 2], 0.0f);
  EXPECT_EQ(head[5 * 2 + 1], 0.0f);
  EXPECT_NE(head[0], 0.0f);
  for (int h = 0; h < 2; ++h) {
    // Both start from the same non-zero gradients: the sums add to what is there.
    std::vector<float> w1 = normals(weights.width * weights.input(), 10 + h), b1 = normals(weights.width, 20 + h);
    std::vector<float> w2 = normals(weights.width, 30 + h), b2 = normals(1, 40 + h);
    std::vector<float> w1_e = w1, b1_e = b1, w2_e = w2, b2_e = b2;
    controller_kernels::head_weight_gradients(Device::cpu, weights, h, kRows, setup.tape(), gradients,
                                              {w1.data(), b1.data(), w2.data(), b2.data()});
    const controller_kernels::HeadWeightGradientElement element{
        weights, h, kRows, setup.tape(), gradients, {w1_e.data(), b1_e.data(), w2_e.data(), b2_e.data()}};
    run_each(controller_kernels::head_weight_elements(weights), element);
    EXPECT_EQ(w1_e, w1) << "head " << h;
    EXPECT_EQ(b1_e, b1) << "head " << h;
    EXPECT_EQ(w2_e, w2) << "head " << h;
    EXPECT_EQ(b2_e, b2) << "head " << h;
    // The h-columns of w1 are the GEMM's: the functors leave them alone.
    const std::vector<float> untouched = normals(weights.width * weights.input(), 10 + h);
    for (int64_t j = 0; j < weights.width; ++j) {
      for (int64_t i = 0; i < weights.hidden_size; ++i) {
        EXPECT_EQ(w1_e[j * weights.input() + i], untouched[j * weights.input() + i]);
      }
    }
  }
  std::vector<float> phi = normals(kExperts * weights.set_dim, 50), phi_e = phi;
  controller_kernels::set_encoding_gradients(Device::cpu, set.data(), setup.masks.data(), kRows, weights.k_hat, kExperts,
                                             weights.set_dim, phi.data());
  run_each(kExperts * weights.set_dim, controller_kernels::SetEncodingGradientElement{set.data(), setup.masks.data(), kRows,
                                                                                        weights.k_hat, weights.set_dim,
                                                                                        phi_e.data()});
  EXPECT_EQ(phi_e, phi);
  EXPECT_NE(phi, normals(kExperts * weights.set_dim, 50)) << "the set encoding received no gradient";
}

TEST(ControllerKernels, ForwardRowsThroughTheKernelCallGiveTheControllersValues) {
  Fixture setup;
  const controller_math::HeadWeights weights = setup.controller->head_weights();
  const HiddenProjection projection = setup.controller->project(setup.hidden, kRows, setup.router_logits);
  std::vector<float> probabilities(kRows * kExperts), best(kRows);
  controller_kernels::router_coverage(Device::cpu, setup.router_logits.data(), kRows, kExperts, weights.k_hat,
                                      probabilities.data(), best.data());
  EXPECT_EQ(probabilities, projection.router_probabilities);
  EXPECT_EQ(best, projection.best_coverage);
  // Rows in another order, through the source indices.
  const std::vector<int64_t> source = {4, 0, 8};
  std::vector<int32_t> masks;
  for (const int64_t r : source) masks.insert(masks.end(), setup.masks.begin() + r * 3, setup.masks.begin() + r * 3 + 3);
  const ControllerEvaluation expected = setup.controller->evaluate_rows(projection, source, masks);
  const auto rows = static_cast<int64_t>(source.size());
  std::vector<float> beta(rows), q(rows), normed(rows * weights.set_dim), scale(rows), coverage(rows * 2),
      termination(rows * weights.width), q_hidden(rows * weights.width);
  controller_kernels::heads_forward(Device::cpu, weights,
                                    {rows, source.data(), projection.projected.data(), projection.phi_out.data(),
                                     masks.data(), probabilities.data(), best.data()},
                                    {beta.data(), q.data(), normed.data(), scale.data(), coverage.data(),
                                     termination.data(), q_hidden.data()});
  EXPECT_EQ(beta, expected.beta);
  EXPECT_EQ(q, expected.q);
  EXPECT_EQ(coverage, expected.coverage);
  EXPECT_EQ(termination, expected.termination_hidden);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_GT(coverage[r * 2], 0.0f);
    EXPECT_GE(coverage[r * 2 + 1], 0.0f) << "a mask covers more than the best mask of its size";
  }
}

TEST(ControllerKernels, RouterCoverageSumsTheLargestProbabilitiesWithTies) {
  // Ties at the cut: three equal logits of which two make the top 4.
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, 1.0f, -1.0f, 1.0f, 3.0f, 0.0f};
  std::vector<float> probabilities(logits.size());
  for (int64_t k = 1; k <= 8; ++k) {
    const float best = controller_math::router_coverage_row(logits.data(), 8, k, probabilities.data());
    std::vector<float> sorted = probabilities;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    double expected = 0.0;
    for (int64_t m = 0; m < k; ++m) expected += sorted[static_cast<size_t>(m)];
    EXPECT_EQ(best, static_cast<float>(expected)) << "k " << k;
  }
  EXPECT_NEAR(std::accumulate(probabilities.begin(), probabilities.end(), 0.0), 1.0, 1e-6);
}

TEST(ControllerKernels, TopIndicesIsPartialSortWithTiesToTheLowerIndex) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    CounterRandom random(seed, {});
    std::vector<double> keys(11);
    for (double& key : keys) key = std::floor(random.uniform() * 4);  // many ties
    for (int64_t k = 1; k <= 11; ++k) {
      std::vector<int32_t> order(keys.size());
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t a, int32_t b) { return keys[a] > keys[b] || (keys[a] == keys[b] && a < b); });
      order.resize(static_cast<size_t>(k));
      std::vector<int32_t> top(static_cast<size_t>(k));
      controller_math::top_indices(keys.data(), 11, k, top.data());
      EXPECT_EQ(top, order) << "seed " << seed << " k " << k;
    }
  }
}

TEST(ControllerKernels, DecisionsDrawFromTheNamedStreams) {
  // The termination draw is the (step, sequence, layer, position, termination) stream's first
  // uniform, the sampled tuple the selection stream's Gumbel-top-k: what the initializer-list
  // streams give, so that CPU and GPU (which has no initializer lists) draw alike.
  const std::vector<float> logits = normals(kExperts, 60, 2.0);
  const int64_t k = 3;
  int terminations = 0;
  for (int64_t position = 1; position < 400; ++position) {
    const float beta = 0.3f;
    std::vector<double> keys(kExperts);
    std::vector<int32_t> tuple(k, -1), held = {0, 1, 2};
    const bool terminated = controller_math::decide_row(7, 11, 5, 2, position, beta, logits.data(), kExperts, k, true,
                                                        keys.data(), tuple.data(), held.data());
    CounterRandom termination(7, {11, 5, 2, static_cast<uint64_t>(position), stream_key(RandomStream::termination)});
    ASSERT_EQ(terminated, termination.uniform() < beta) << position;
    if (!terminated) {
      EXPECT_EQ(held, (std::vector<int32_t>{0, 1, 2}));
      EXPECT_EQ(tuple, (std::vector<int32_t>(k, -1)));
      continue;
    }
    ++terminations;
    CounterRandom selection(7, {11, 5, 2, static_cast<uint64_t>(position), stream_key(RandomStream::selection)});
    const std::vector<int32_t> expected = sample_plackett_luce(logits, k, selection);
    EXPECT_EQ(tuple, expected);
    std::vector<int32_t> sorted = expected;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(held, sorted);
  }
  EXPECT_GT(terminations, 80);
  EXPECT_LT(terminations, 160);
}

TEST(ControllerKernels, RefusesACudaDeviceInABuildWithout) {
#if defined(TEMOE_WITH_CUDA)
  GTEST_SKIP() << "this build has the CUDA backend; tests/gpu/ checks the CUDA kernels";
#else
  std::vector<double> values(4, 0.0);
  std::vector<uint8_t> flags(4, 1);
  EXPECT_THROW(controller_kernels::option_value_targets(Device::cuda, values.data(), values.data(), values.data(),
                                                        values.data(), flags.data(), flags.data(), 1, 4, 1.0, 1.0, 0.0,
                                                        values.data(), flags.data()),
               Error);
#endif
}

}  // namespace
}  // namespace temoe
