// The controllers' and learner's kernels (src/learner/controller_kernels.hpp) on the GPU against
// the same calls on the host, at the corpus testbed's shapes (D 64, E 32, k_hat 16): router
// coverage, both heads' forward and backward with their weight gradients, the set encoding's
// gradient, the option-value targets, Plackett-Luce log-probabilities and gradients, and the
// draws, which must be the same decisions bit for bit (counter-based streams on both devices).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/learner/controller_kernels.hpp"
#include "src/learner/option_controller.hpp"
#include "src/tensor/device_memory.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/support/random_batch.hpp"

namespace temoe {
namespace {

// A device copy of a host array, and back.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host)
      : size_(host.size()), memory_(allocate_cuda_memory(std::max<size_t>(host.size(), 1) * sizeof(T))) {
    copy_cuda_memory(memory_.get(), host.data(), size_ * sizeof(T));
  }
  T* data() const { return reinterpret_cast<T*>(memory_.get()); }
  std::vector<T> host() const {
    std::vector<T> out(size_);
    copy_cuda_to_host(out.data(), memory_.get(), size_ * sizeof(T));
    return out;
  }

 private:
  size_t size_;
  std::shared_ptr<float> memory_;
};

template <typename T>
DeviceArray<T> upload(const std::vector<T>& host) {
  return DeviceArray<T>(host);
}

::testing::AssertionResult close(const std::vector<float>& actual, const std::vector<float>& expected, double tolerance) {
  return testing::close_to(Tensor::from_vector({static_cast<int64_t>(actual.size())}, actual),
                           Tensor::from_vector({static_cast<int64_t>(expected.size())}, expected), tolerance);
}

std::vector<float> normals(int64_t count, uint64_t seed, double scale = 1.0) {
  CounterRandom random(seed, {});
  std::vector<float> values(static_cast<size_t>(count));
  for (float& value : values) value = static_cast<float>(scale * random.normal());
  return values;
}

constexpr int64_t kHidden = 64, kExperts = 32, kRows = 300;

class CudaControllerKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    TEMOE_SKIP_WITHOUT_CUDA();
    config_.k_hat = 16;
    controller_ = std::make_unique<OptionController>(parameters_, 0, kHidden, kExperts, config_, 3);
    testing::add_parameter_noise(parameters_, 0.3, 4, [](const std::string& name) { return !is_value_statistic(name); });
    hidden_ = normals(kRows * kHidden, 5);
    router_logits_ = normals(kRows * kExperts, 6, 2.0);
    for (int64_t r = 0; r < kRows; ++r) {
      std::vector<int32_t> ids(kExperts);
      for (int64_t i = 0; i < kExperts; ++i) ids[i] = static_cast<int32_t>(i);
      CounterRandom random(7, {static_cast<uint64_t>(r)});
      for (int64_t i = kExperts - 1; i > 0; --i) std::swap(ids[i], ids[static_cast<int64_t>(random.uniform() * static_cast<double>(i + 1))]);
      ids.resize(static_cast<size_t>(config_.k_hat));
      std::sort(ids.begin(), ids.end());
      masks_.insert(masks_.end(), ids.begin(), ids.end());
    }
    for (const Parameter& parameter : parameters_.parameters()) device_values_.emplace_back(parameter.value.to_vector());
  }

  // The heads' weights as device pointers.
  controller_math::HeadWeights device_weights() const {
    controller_math::HeadWeights weights = controller_->head_weights();
    const auto device = [&](const float* host) {
      for (size_t i = 0; i < parameters_.parameters().size(); ++i) {
        if (parameters_.parameters()[i].value.data() == host) return static_cast<const float*>(device_values_[i].data());
      }
      ADD_FAILURE() << "a head weight that is not a parameter";
      return host;
    };
    weights.termination_w1 = device(weights.termination_w1);
    weights.termination_b1 = device(weights.termination_b1);
    weights.termination_w2 = device(weights.termination_w2);
    weights.termination_b2 = device(weights.termination_b2);
    weights.q_w1 = device(weights.q_w1);
    weights.q_b1 = device(weights.q_b1);
    weights.q_w2 = device(weights.q_w2);
    weights.q_b2 = device(weights.q_b2);
    weights.q_target_mean = device(weights.q_target_mean);
    weights.q_target_scale = device(weights.q_target_scale);
    return weights;
  }

  ParameterSet parameters_;
  ControllerConfig config_;
  std::unique_ptr<OptionController> controller_;
  std::vector<DeviceArray<float>> device_values_;
  std::vector<float> hidden_, router_logits_;
  std::vector<int32_t> masks_;
};

TEST_F(CudaControllerKernels, CoverageAndHeadsForwardMatchTheHost) {
  const HiddenProjection projection = controller_->project(hidden_, kRows, router_logits_);
  std::vector<int64_t> source(kRows);
  for (int64_t r = 0; r < kRows; ++r) source[r] = (r * 7) % kRows;  // rows in another order
  const ControllerEvaluation expected = controller_->evaluate_rows(projection, source, masks_);

  const auto logits = upload(router_logits_);
  DeviceArray<float> probabilities{std::vector<float>(kRows * kExperts)}, best{std::vector<float>(kRows)};
  controller_kernels::router_coverage(Device::cuda, logits.data(), kRows, kExperts, config_.k_hat, probabilities.data(),
                                      best.data());
  EXPECT_TRUE(close(probabilities.host(), projection.router_probabilities, 1e-6));
  EXPECT_TRUE(close(best.host(), projection.best_coverage, 1e-6));

  const auto projected = upload(projection.projected.to_vector()), phi_out = upload(projection.phi_out);
  const auto masks = upload(masks_);
  const auto device_source = upload(source);
  const auto zeros = [](int64_t count) { return DeviceArray<float>(std::vector<float>(static_cast<size_t>(count))); };
  auto beta = zeros(kRows), q = zeros(kRows), normed = zeros(kRows * config_.set_dim), scale = zeros(kRows),
       coverage = zeros(kRows * 2), termination = zeros(kRows * config_.hidden), q_hidden = zeros(kRows * config_.hidden);
  controller_kernels::heads_forward(Device::cuda, device_weights(),
                                    {kRows, device_source.data(), projected.data(), phi_out.data(), masks.data(),
                                     probabilities.data(), best.data()},
                                    {beta.data(), q.data(), normed.data(), scale.data(), coverage.data(),
                                     termination.data(), q_hidden.data()});
  EXPECT_TRUE(close(beta.host(), expected.beta, 1e-5));
  EXPECT_TRUE(close(q.host(), expected.q, 1e-5));
  EXPECT_TRUE(close(normed.host(), expected.normed_set, 1e-5));
  EXPECT_TRUE(close(coverage.host(), expected.coverage, 1e-5));
  EXPECT_TRUE(close(termination.host(), expected.termination_hidden, 1e-5));
  EXPECT_TRUE(close(q_hidden.host(), expected.q_hidden, 1e-5));
}

TEST_F(CudaControllerKernels, BackwardAndWeightGradientsMatchTheHost) {
  ControllerEvaluation evaluation = controller_->evaluate(hidden_, masks_, kRows, router_logits_);
  const controller_math::HeadWeights host_weights = controller_->head_weights();
  const int64_t width = config_.hidden, set = config_.set_dim;
  std::vector<float> d_beta = normals(kRows, 8), d_q = normals(kRows, 9);
  for (int64_t r = 0; r < kRows; r += 10) d_beta[r] = 0.0f;
  const controller_kernels::HeadArrays host_tape{evaluation.beta.data(),     evaluation.q.data(),
                                                 evaluation.normed_set.data(), evaluation.set_norm_scale.data(),
                                                 evaluation.coverage.data(), evaluation.termination_hidden.data(),
                                                 evaluation.q_hidden.data()};
  std::vector<float> head(kRows * 2), pre(kRows * 2 * width), set_gradient(kRows * set);
  const controller_kernels::HeadGradients host_gradients{head.data(), pre.data(), set_gradient.data()};
  controller_kernels::heads_backward(Device::cpu, host_weights, kRows, host_tape, d_beta.data(), d_q.data(), host_gradients);

  const auto beta = upload(evaluation.beta), q = upload(evaluation.q), normed = upload(evaluation.normed_set),
             scale = upload(evaluation.set_norm_scale), coverage = upload(evaluation.coverage),
             termination = upload(evaluation.termination_hidden), q_hidden = upload(evaluation.q_hidden);
  const controller_kernels::HeadArrays tape{beta.data(),     q.data(),           normed.data(), scale.data(),
                                            coverage.data(), termination.data(), q_hidden.data()};
  const auto device_d_beta = upload(d_beta), device_d_q = upload(d_q);
  DeviceArray<float> device_head{std::vector<float>(head.size())}, device_pre{std::vector<float>(pre.size())},
      device_set{std::vector<float>(set_gradient.size())};
  const controller_kernels::HeadGradients gradients{device_head.data(), device_pre.data(), device_set.data()};
  const controller_math::HeadWeights weights = device_weights();
  controller_kernels::heads_backward(Device::cuda, weights, kRows, tape, device_d_beta.data(), device_d_q.data(), gradients);
  EXPECT_TRUE(close(device_head.host(), head, 1e-5));
  EXPECT_TRUE(close(device_pre.host(), pre, 1e-5));
  EXPECT_TRUE(close(device_set.host(), set_gradient, 1e-5));

  for (int h = 0; h < 2; ++h) {
    std::vector<float> w1 = normals(width * host_weights.input(), 10 + h), b1 = normals(width, 20 + h),
                       w2 = normals(width, 30 + h), b2 = normals(1, 40 + h);
    const auto device_w1 = upload(w1), device_b1 = upload(b1), device_w2 = upload(w2), device_b2 = upload(b2);
    controller_kernels::head_weight_gradients(Device::cpu, host_weights, h, kRows, host_tape, host_gradients,
                                              {w1.data(), b1.data(), w2.data(), b2.data()});
    controller_kernels::head_weight_gradients(Device::cuda, weights, h, kRows, tape, gradients,
                                              {device_w1.data(), device_b1.data(), device_w2.data(), device_b2.data()});
    EXPECT_TRUE(close(device_w1.host(), w1, 1e-5)) << "head " << h;
    EXPECT_TRUE(close(device_b1.host(), b1, 1e-5)) << "head " << h;
    EXPECT_TRUE(close(device_w2.host(), w2, 1e-5)) << "head " << h;
    EXPECT_TRUE(close(device_b2.host(), b2, 1e-5)) << "head " << h;
  }
  std::vector<float> phi(kExperts * set, 0.5f);
  const auto device_phi = upload(phi);
  const auto masks = upload(masks_);
  controller_kernels::set_encoding_gradients(Device::cpu, set_gradient.data(), masks_.data(), kRows, config_.k_hat, kExperts,
                                             set, phi.data());
  controller_kernels::set_encoding_gradients(Device::cuda, device_set.data(), masks.data(), kRows, config_.k_hat, kExperts,
                                             set, device_phi.data());
  EXPECT_TRUE(close(device_phi.host(), phi, 1e-5));
}

TEST_F(CudaControllerKernels, OptionValueTargetsAndPlackettLuceMatchTheHost) {
  const int64_t sequences = 6, length = 40;
  const int64_t count = sequences * length;
  std::vector<double> rewards, q_previous, beta, reload;
  std::vector<uint8_t> terminated, document_end;
  CounterRandom random(11, {});
  for (int64_t i = 0; i < count; ++i) {
    rewards.push_back(random.normal());
    q_previous.push_back(random.normal());
    beta.push_back(random.uniform());
    reload.push_back(random.normal());
    terminated.push_back(random.uniform() < 0.2 ? 1 : 0);
    document_end.push_back(random.uniform() < 0.05 || i % length == length - 1 ? (i < count / 2 ? 1 : 0) : 0);
  }
  std::vector<double> expected(count);
  std::vector<uint8_t> expected_valid(count);
  controller_kernels::option_value_targets(Device::cpu, rewards.data(), q_previous.data(), beta.data(), reload.data(),
                                           terminated.data(), document_end.data(), sequences, length, 0.99, 0.9, 0.03,
                                           expected.data(), expected_valid.data());
  const auto d_rewards = upload(rewards), d_q = upload(q_previous), d_beta = upload(beta), d_reload = upload(reload);
  const auto d_terminated = upload(terminated), d_end = upload(document_end);
  DeviceArray<double> targets{std::vector<double>(count)};
  DeviceArray<uint8_t> valid{std::vector<uint8_t>(count)};
  controller_kernels::option_value_targets(Device::cuda, d_rewards.data(), d_q.data(), d_beta.data(), d_reload.data(),
                                           d_terminated.data(), d_end.data(), sequences, length, 0.99, 0.9, 0.03,
                                           targets.data(), valid.data());
  EXPECT_EQ(valid.host(), expected_valid);
  const std::vector<double> actual = targets.host();
  for (int64_t i = 0; i < count; ++i) EXPECT_NEAR(actual[i], expected[i], 1e-12 * (1 + std::fabs(expected[i]))) << i;

  const int64_t rows = 50, k = config_.k_hat;
  const std::vector<float> logits = normals(rows * kExperts, 12, 2.0);
  std::vector<int32_t> tuples;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t m = 0; m < k; ++m) tuples.push_back(static_cast<int32_t>((r + 5 * m) % kExperts));
  }
  std::vector<double> log_probability(rows), scratch(rows * kExperts);
  std::vector<float> gradient(rows * kExperts);
  controller_kernels::plackett_luce(Device::cpu, logits.data(), tuples.data(), rows, kExperts, k, log_probability.data(),
                                    gradient.data(), scratch.data());
  const auto d_logits = upload(logits);
  const auto d_tuples = upload(tuples);
  DeviceArray<double> d_log_probability{std::vector<double>(rows)}, d_scratch{scratch};
  DeviceArray<float> d_gradient{std::vector<float>(rows * kExperts)};
  controller_kernels::plackett_luce(Device::cuda, d_logits.data(), d_tuples.data(), rows, kExperts, k,
                                    d_log_probability.data(), d_gradient.data(), d_scratch.data());
  const std::vector<double> actual_log_probability = d_log_probability.host();
  for (int64_t r = 0; r < rows; ++r) EXPECT_NEAR(actual_log_probability[r], log_probability[r], 1e-9 * (1 + std::fabs(log_probability[r])));
  EXPECT_TRUE(close(d_gradient.host(), gradient, 1e-6));
}

TEST_F(CudaControllerKernels, DrawsMakeTheHostsDecisions) {
  const int64_t batch = 64;
  std::vector<float> beta(batch);
  CounterRandom random(13, {});
  for (float& value : beta) value = static_cast<float>(random.uniform());
  const std::vector<float> logits = normals(batch * kExperts, 14, 2.0);
  std::vector<int64_t> ids(batch);
  for (int64_t b = 0; b < batch; ++b) ids[b] = 1000 + 3 * b;
  for (const bool sample : {true, false}) {
    const controller_kernels::DecisionStep at{5, 17, 2, 33, batch, kExperts, config_.k_hat, sample};
    std::vector<int32_t> held(masks_.begin(), masks_.begin() + batch * config_.k_hat), tuples(held.size(), -1);
    std::vector<double> keys(batch * kExperts);
    std::vector<uint8_t> terminated(batch);
    const auto d_beta = upload(beta), d_logits = upload(logits);
    const auto d_ids = upload(ids);
    const auto d_held = upload(held), d_tuples = upload(tuples);
    const auto d_keys = upload(keys);
    const auto d_terminated = upload(terminated);
    controller_kernels::decide(Device::cpu, at, beta.data(), logits.data(), ids.data(), keys.data(), held.data(),
                               tuples.data(), terminated.data());
    controller_kernels::decide(Device::cuda, at, d_beta.data(), d_logits.data(), d_ids.data(), d_keys.data(), d_held.data(),
                               d_tuples.data(), d_terminated.data());
    EXPECT_EQ(d_terminated.host(), terminated) << "sample " << sample;
    EXPECT_EQ(d_held.host(), held) << "sample " << sample;
    EXPECT_EQ(d_tuples.host(), tuples) << "sample " << sample;
    EXPECT_GT(std::count(terminated.begin(), terminated.end(), 1), 10);
  }
}

TEST_F(CudaControllerKernels, LearnerTermsAndTheirSumsMatchTheHost) {
  const int64_t time = 30, count = 4 * time, k = config_.k_hat;
  CounterRandom random(15, {});
  std::vector<uint8_t> valid(count), terminated(count);
  std::vector<double> q_target(count), q_previous(count), reload(count), weights(count);
  std::vector<float> q_current(count), beta(count);
  for (int64_t i = 0; i < count; ++i) {
    valid[i] = random.uniform() < 0.95 ? 1 : 0;
    terminated[i] = random.uniform() < 0.3 ? 1 : 0;
    q_target[i] = random.normal();
    q_previous[i] = random.normal();
    reload[i] = random.normal();
    weights[i] = 0.5 + random.uniform();
    q_current[i] = static_cast<float>(random.normal());
    beta[i] = static_cast<float>(random.uniform());
  }
  const std::vector<float> logits = normals(count * kExperts, 16, 2.0);
  std::vector<int32_t> tuples;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t m = 0; m < k; ++m) tuples.push_back(static_cast<int32_t>((i + 3 * m) % kExperts));
  }
  // Host.
  std::vector<double> termination(count), selection(count), flags(count * 3), counts(3);
  controller_kernels::target_terms(Device::cpu, {count, time, 0.03, valid.data(), terminated.data(), q_target.data(),
                                                 q_previous.data(), reload.data(), termination.data(), selection.data(),
                                                 flags.data()});
  controller_kernels::column_sums(Device::cpu, flags.data(), count, 3, counts.data());
  std::vector<float> d_q(count), d_beta(count), d_selection(count * kExperts);
  std::vector<double> terms(count * controller_kernels::kLossTerms), scratch(count * kExperts),
      sums(controller_kernels::kLossTerms);
  controller_kernels::GradientPositions host;
  host.count = count;
  host.time = time;
  host.experts = kExperts;
  host.k_hat = k;
  host.valid = valid.data();
  host.terminated = terminated.data();
  host.q_target = q_target.data();
  host.termination_advantage = termination.data();
  host.selection_advantage = selection.data();
  host.reload_value = reload.data();
  host.q_current = q_current.data();
  host.beta_previous = beta.data();
  host.selection_logits = logits.data();
  host.tuples = tuples.data();
  host.weights = weights.data();
  host.valid_count = counts[0];
  host.termination_count = counts[1];
  host.selection_count = counts[2];
  host.value_scale = 1.7;
  host.value_coefficient = 0.01;
  host.selection_coefficient = 1.0;
  host.d_q = d_q.data();
  host.d_beta = d_beta.data();
  host.d_selection = d_selection.data();
  host.terms = terms.data();
  host.scratch = scratch.data();
  controller_kernels::gradient_terms(Device::cpu, host);
  controller_kernels::column_sums(Device::cpu, terms.data(), count, controller_kernels::kLossTerms, sums.data());
  // Device.
  const auto d_valid = upload(valid), d_terminated = upload(terminated);
  const auto d_q_target = upload(q_target), d_q_previous = upload(q_previous), d_reload = upload(reload),
             d_weights = upload(weights);
  const auto d_q_current = upload(q_current), d_beta_previous = upload(beta), d_logits = upload(logits);
  const auto d_tuples = upload(tuples);
  const auto zeros = [](int64_t n) { return DeviceArray<double>(std::vector<double>(static_cast<size_t>(n))); };
  auto d_termination = zeros(count), d_selection_advantage = zeros(count), d_flags = zeros(count * 3), d_counts = zeros(3);
  controller_kernels::target_terms(Device::cuda, {count, time, 0.03, d_valid.data(), d_terminated.data(), d_q_target.data(),
                                                  d_q_previous.data(), d_reload.data(), d_termination.data(),
                                                  d_selection_advantage.data(), d_flags.data()});
  controller_kernels::column_sums(Device::cuda, d_flags.data(), count, 3, d_counts.data());
  EXPECT_EQ(d_counts.host(), counts);
  EXPECT_EQ(d_termination.host(), termination);
  EXPECT_EQ(d_selection_advantage.host(), selection);
  const auto floats = [](int64_t n) { return DeviceArray<float>(std::vector<float>(static_cast<size_t>(n))); };
  auto out_q = floats(count), out_beta = floats(count), out_selection = floats(count * kExperts);
  auto out_terms = zeros(count * controller_kernels::kLossTerms), out_scratch = zeros(count * kExperts),
       out_sums = zeros(controller_kernels::kLossTerms);
  controller_kernels::GradientPositions device = host;
  device.valid = d_valid.data();
  device.terminated = d_terminated.data();
  device.q_target = d_q_target.data();
  device.termination_advantage = d_termination.data();
  device.selection_advantage = d_selection_advantage.data();
  device.reload_value = d_reload.data();
  device.q_current = d_q_current.data();
  device.beta_previous = d_beta_previous.data();
  device.selection_logits = d_logits.data();
  device.tuples = d_tuples.data();
  device.weights = d_weights.data();
  device.d_q = out_q.data();
  device.d_beta = out_beta.data();
  device.d_selection = out_selection.data();
  device.terms = out_terms.data();
  device.scratch = out_scratch.data();
  controller_kernels::gradient_terms(Device::cuda, device);
  controller_kernels::column_sums(Device::cuda, out_terms.data(), count, controller_kernels::kLossTerms, out_sums.data());
  EXPECT_TRUE(close(out_q.host(), d_q, 1e-6));
  EXPECT_TRUE(close(out_beta.host(), d_beta, 1e-6));
  EXPECT_TRUE(close(out_selection.host(), d_selection, 1e-6));
  const std::vector<double> device_sums = out_sums.host();
  for (int64_t c = 0; c < controller_kernels::kLossTerms; ++c) {
    EXPECT_NEAR(device_sums[c], sums[c], 1e-9 * (1 + std::fabs(sums[c]))) << "sum " << c;
  }
}

}  // namespace
}  // namespace temoe
