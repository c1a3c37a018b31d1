// The backward pass of the whole MoE transformer:
//  - the training forward (with its activation tape) gives bit-identical logits to inference;
//  - loss and gradients match PyTorch autograd on the reference implementation
//    (tests/fixtures/gradients, written by tests/reference/make_gradient_fixtures.py);
//  - finite differences of the fp32 loss (accumulated in double) agree with the gradient of every
//    parameter tensor, along the gradient's direction and at its largest elements.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>

#include "src/core/counter_random.hpp"
#include "src/io/npy_file.hpp"
#include "src/model/model_initialization.hpp"
#include "src/model/moe_transformer.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/training/language_model_loss.hpp"
#include "src/training/training_step.hpp"
#include "tests/support/random_batch.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

struct Batch {
  int64_t batch = 0, time = 0;
  std::vector<int32_t> inputs, targets;
};

// The fixture's tokens [B, T + 1] as inputs [:, :-1] and targets [:, 1:].
Batch fixture_batch(const std::string& name) {
  const TokenArray tokens = read_token_npy(kFixtures / name / "tokens.npy");
  Batch batch;
  batch.batch = tokens.shape[0];
  batch.time = tokens.shape[1] - 1;
  for (int64_t b = 0; b < batch.batch; ++b) {
    for (int64_t t = 0; t < batch.time; ++t) {
      batch.inputs.push_back(tokens.ids[static_cast<size_t>(b * tokens.shape[1] + t)]);
      batch.targets.push_back(tokens.ids[static_cast<size_t>(b * tokens.shape[1] + t + 1)]);
    }
  }
  return batch;
}

std::unique_ptr<TrainingModel> load_training_model(const std::string& name) {
  const auto directory = kFixtures / name;
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const SafetensorsCheckpoint checkpoint(directory);
  return make_training_model(config, load_model_weights(checkpoint, config, {0, config.num_experts}), Device::cpu,
                             nullptr);
}

TEST(MoeBackward, TrainingForwardEqualsInferenceForwardBitForBit) {
  for (const std::string name : {"mixtral_f32", "mixtral_bf16_sharded", "olmoe_f32_sharded", "olmoe_bf16_tied"}) {
    auto model = load_training_model(name);
    const TokenArray tokens = read_token_npy(kFixtures / name / "tokens.npy");
    LocalExperts experts(*model->backend, model->weights);
    MoeTransformer inference(model->config, model->weights, *model->backend, experts);
    const Tensor expected = inference.forward(tokens.ids, tokens.shape[0], tokens.shape[1]);
    ActivationTape tape;
    const Tensor logits = model->transformer->forward(tokens.ids, tokens.shape[0], tokens.shape[1], tape);
    ASSERT_EQ(logits.shape(), expected.shape()) << name;
    EXPECT_EQ(std::memcmp(logits.data(), expected.data(), static_cast<size_t>(logits.numel()) * 4), 0) << name;
  }
}

// Gradient errors measured per tensor as max |got - expected| / max |expected|.
class MatchesPytorchAutograd : public ::testing::TestWithParam<std::string> {};

TEST_P(MatchesPytorchAutograd, LossAndEveryGradient) {
  const std::string name = GetParam();
  const auto reference_directory = kFixtures / "gradients" / name;
  nlohmann::json summary;
  std::ifstream(reference_directory / "loss.json") >> summary;
  auto model = load_training_model(name);
  const Batch batch = fixture_batch(name);
  const StepLosses losses = compute_gradients(
      *model, {}, batch.inputs, batch.targets, batch.batch, batch.time, batch.batch * batch.time,
      {.load_balancing_coefficient = summary["load_balancing_coefficient"].get<double>()});
  // fp32 forward, float64 reference: the loss agrees to ~1e-6 relative.
  EXPECT_NEAR(losses.cross_entropy, summary["cross_entropy"].get<double>(), 2e-6 * summary["cross_entropy"].get<double>());
  EXPECT_NEAR(losses.load_balancing, summary["load_balancing"].get<double>(), 1e-6);
  EXPECT_NEAR(losses.total, summary["loss"].get<double>(), 2e-6 * summary["loss"].get<double>());

  const SafetensorsFile reference(reference_directory / "gradients.safetensors");
  ASSERT_EQ(reference.entries().size(), model->parameters.all.parameters().size()) << name;
  double worst = 0.0;
  std::string worst_name;
  for (const auto& parameter : model->parameters.all.parameters()) {
    ASSERT_TRUE(reference.contains(parameter.name)) << parameter.name;
    ASSERT_EQ(reference.entry(parameter.name).shape, parameter.gradient.shape()) << parameter.name;
    std::vector<float> expected(static_cast<size_t>(parameter.gradient.numel()));
    reference.read_as_float(parameter.name, expected.data());
    double difference = 0.0, scale = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      difference = std::max(difference, std::fabs(double(parameter.gradient.data()[i]) - expected[i]));
      scale = std::max(scale, std::fabs(double(expected[i])));
    }
    ASSERT_GT(scale, 0.0) << parameter.name << " has a zero reference gradient";
    const double error = difference / scale;
    EXPECT_LE(error, 1e-4) << name << " " << parameter.name << " (max |grad| " << scale << ")";
    if (error > worst) {
      worst = error;
      worst_name = parameter.name;
    }
  }
  std::printf("[ measured ] %s: worst gradient error %.3g (max abs / max |ref|) in %s\n", name.c_str(), worst,
              worst_name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MatchesPytorchAutograd, ::testing::Values("mixtral_f32", "olmoe_bf16_tied"));

// ---------------------------------------------------------------------------------------------
// Finite differences.

struct Evaluation {
  double loss = 0;
  std::vector<std::vector<int32_t>> chosen;  // per layer
};

// The loss the gradient is of (cross-entropy + load balancing, f held at its routing, + routing
// locality when on), in double.
Evaluation evaluate(TrainingModel& model, const Batch& batch, const LossOptions& options) {
  ActivationTape tape;
  const Tensor logits = model.transformer->forward(batch.inputs, batch.batch, batch.time, tape);
  Tensor scratch(logits.shape());
  const int64_t tokens = batch.batch * batch.time;
  Evaluation evaluation;
  evaluation.loss = next_token_cross_entropy(*model.backend, logits, batch.targets, tokens, scratch) / double(tokens);
  const RouterStatistics statistics = router_statistics(tape, model.config.num_experts, model.config.top_k);
  evaluation.loss += load_balancing_loss(statistics.routed, statistics, tokens, model.config.top_k,
                                        options.load_balancing_coefficient)
                         .value;
  if (options.routing_locality_coefficient != 0.0) {
    evaluation.loss += routing_locality_loss(tape, options.locality_window, tokens / options.locality_window,
                                             options.routing_locality_coefficient)
                           .value;
  }
  for (const auto& layer : tape.layers) evaluation.chosen.push_back(layer.moe.chosen);
  return evaluation;
}

struct FiniteDifferenceResult {
  double analytic = 0, numeric = 0;
  bool routing_changed = false;
};

// (L(w + h u) - L(w - h u)) against sum_i g_i (w+_i - w-_i), with w+- rounded to float as stored.
FiniteDifferenceResult directional_check(TrainingModel& model, Parameter& parameter, const std::vector<float>& gradient,
                                         const std::vector<double>& direction, double h, const Batch& batch,
                                         const LossOptions& options, const Evaluation& base) {
  float* values = parameter.value.data();
  const std::vector<float> original(values, values + parameter.value.numel());
  FiniteDifferenceResult result;
  double loss[2];
  std::vector<float> perturbed[2];
  for (int side = 0; side < 2; ++side) {
    const double sign = side == 0 ? 1.0 : -1.0;
    for (size_t i = 0; i < original.size(); ++i) values[i] = static_cast<float>(original[i] + sign * h * direction[i]);
    perturbed[side].assign(values, values + original.size());
    const Evaluation evaluation = evaluate(model, batch, options);
    loss[side] = evaluation.loss;
    result.routing_changed = result.routing_changed || evaluation.chosen != base.chosen;
  }
  std::copy(original.begin(), original.end(), values);
  result.numeric = loss[0] - loss[1];
  for (size_t i = 0; i < original.size(); ++i) {
    result.analytic += static_cast<double>(gradient[i]) * (double(perturbed[0][i]) - double(perturbed[1][i]));
  }
  return result;
}

// For every parameter tensor: the directional derivative along the gradient itself (checks its
// length) and single elements at the largest |g| (checks individual entries). Central differences
// of an fp32 forward: the loss's rounding noise is ~1e-7, so steps are chosen so the changes are
// ~1e-3 or more, and the tolerances are relative.
void check_model_by_finite_differences(TrainingModel& model, const Batch& batch, const LossOptions& options,
                                       double tolerance) {
  const StepLosses losses =
      compute_gradients(model, {}, batch.inputs, batch.targets, batch.batch, batch.time, batch.batch * batch.time, options);
  const Evaluation base = evaluate(model, batch, options);
  EXPECT_NEAR(base.loss, losses.total, 1e-12 + 1e-9 * losses.total);
  double worst = 0.0;
  std::string worst_what;
  int routing_changes = 0;
  for (auto& parameter : model.parameters.all.parameters()) {
    const std::vector<float> gradient = parameter.gradient.to_vector();
    double norm = 0.0;
    for (const float g : gradient) norm += double(g) * g;
    norm = std::sqrt(norm);
    ASSERT_GT(norm, 0.0) << parameter.name << " has a zero gradient";
    // Along the gradient: a step of length h changes the loss by about h |g|.
    std::vector<double> direction(gradient.size());
    for (size_t i = 0; i < gradient.size(); ++i) direction[i] = gradient[i] / norm;
    std::vector<std::pair<std::string, FiniteDifferenceResult>> checks;
    const double h = std::clamp(2e-3 / norm, 1e-4, 3e-2);
    checks.emplace_back("along the gradient",
                        directional_check(model, parameter, gradient, direction, h, batch, options, base));
    // The two largest elements.
    std::vector<size_t> order(gradient.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::min<size_t>(2, order.size()), order.end(),
                      [&](size_t a, size_t b) { return std::fabs(gradient[a]) > std::fabs(gradient[b]); });
    for (size_t n = 0; n < std::min<size_t>(2, order.size()); ++n) {
      std::vector<double> unit(gradient.size(), 0.0);
      unit[order[n]] = 1.0;
      const double element_h = std::clamp(2e-3 / std::fabs(double(gradient[order[n]])), 1e-4, 3e-2);
      checks.emplace_back("element " + std::to_string(order[n]),
                          directional_check(model, parameter, gradient, unit, element_h, batch, options, base));
    }
    for (const auto& [what, check] : checks) {
      if (check.routing_changed) {
        ++routing_changes;  // the loss jumps where the top-k set changes: no derivative there
        continue;
      }
      const double error = std::fabs(check.numeric - check.analytic) / std::fabs(check.analytic);
      EXPECT_LE(error, tolerance) << parameter.name << " " << what << ": finite difference " << check.numeric
                                  << ", gradient " << check.analytic;
      if (error > worst) {
        worst = error;
        worst_what = parameter.name + " " + what;
      }
    }
  }
  // A handful of flips would be bad luck; most checks must be valid.
  EXPECT_LE(routing_changes, 3);
  std::printf("[ measured ] worst finite-difference error %.3g (%s); %d checks skipped for a routing change\n", worst,
              worst_what.c_str(), routing_changes);
}

TEST(MoeBackward, FiniteDifferencesMixtralUntied) {
  auto model = load_training_model("mixtral_f32");
  check_model_by_finite_differences(*model, fixture_batch("mixtral_f32"), {.load_balancing_coefficient = 0.1}, 2e-2);
}

TEST(MoeBackward, FiniteDifferencesOlmoeTiedWithQkNorm) {
  auto model = load_training_model("olmoe_bf16_tied");
  check_model_by_finite_differences(*model, fixture_batch("olmoe_bf16_tied"), {.load_balancing_coefficient = 0.1}, 2e-2);
}

// A model as pretraining starts it: small random weights, tied embeddings, k = 2 of 4, with
// decisive routing (as in a trained model) so that few finite-difference steps flip a choice.
std::unique_ptr<TrainingModel> fresh_mixtral_tied() {
  ModelConfig config;
  config.architecture = Architecture::mixtral;
  config.vocab_size = 40;
  config.hidden_size = 24;
  config.num_layers = 2;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_dim = 8;
  config.expert_ffn_size = 32;
  config.num_experts = 4;
  config.top_k = 2;
  config.max_position_embeddings = 64;
  config.normalize_top_k = true;
  config.tie_word_embeddings = true;
  config.validate("test config");
  auto model = make_training_model(
      config, initialize_model_weights(config, {0, config.num_experts}, {.seed = 3, .standard_deviation = 0.3}),
      Device::cpu, nullptr);
  for (auto& layer : model->weights.layers) {
    for (int64_t i = 0; i < layer.router.numel(); ++i) layer.router.data()[i] *= 8.0f;
  }
  return model;
}

Batch random_batch(int64_t batch_size, int64_t time, int64_t vocab) {
  testing::RandomTokens drawn = testing::random_tokens(vocab, batch_size * time, 5);
  return {batch_size, time, std::move(drawn.tokens), std::move(drawn.targets)};
}

TEST(MoeBackward, FiniteDifferencesFreshlyInitialisedMixtralTied) {
  auto model = fresh_mixtral_tied();
  check_model_by_finite_differences(*model, random_batch(3, 10, 40), {.load_balancing_coefficient = 0.5}, 2e-2);
}

TEST(MoeBackward, FiniteDifferencesWithRoutingLocality) {
  // The locality term's per-token gradient goes through the same router backward; a coefficient
  // large enough that the router's gradient is mostly the locality term's (with it dropped from
  // the backward, the router checks fail by far more than the tolerance).
  auto model = fresh_mixtral_tied();
  check_model_by_finite_differences(
      *model, random_batch(3, 10, 40),
      {.load_balancing_coefficient = 0.5, .routing_locality_coefficient = 2.0, .locality_window = 5}, 2e-2);
}

TEST(MoeBackward, GradientsAccumulateOverBackwardCalls) {
  auto model = load_training_model("mixtral_f32");
  const Batch batch = fixture_batch("mixtral_f32");
  compute_gradients(*model, {}, batch.inputs, batch.targets, batch.batch, batch.time, batch.batch * batch.time, {});
  std::vector<std::vector<float>> once;
  for (const auto& parameter : model->parameters.all.parameters()) once.push_back(parameter.gradient.to_vector());
  ActivationTape tape;
  const Tensor logits = model->transformer->forward(batch.inputs, batch.batch, batch.time, tape);
  Tensor grad(logits.shape());
  next_token_cross_entropy(*model->backend, logits, batch.targets, batch.batch * batch.time, grad);
  const RouterStatistics statistics = router_statistics(tape, model->config.num_experts, model->config.top_k);
  const auto balance = load_balancing_loss(statistics.routed, statistics, batch.batch * batch.time, model->config.top_k, 0.01);
  model->transformer->backward(tape, grad, balance.probability_grads);
  size_t index = 0;
  for (const auto& parameter : model->parameters.all.parameters()) {
    const auto twice = parameter.gradient.to_vector();
    // Sums of the same terms in a different grouping (the embedding's scatter-add): not bitwise.
    for (size_t i = 0; i < twice.size(); ++i) {
      ASSERT_NEAR(twice[i], 2.0f * once[index][i], 1e-5 * std::fabs(once[index][i]) + 1e-9) << parameter.name;
    }
    ++index;
  }
}

TEST(MoeBackward, BackwardRefusesAMismatchedTape) {
  auto model = load_training_model("mixtral_f32");
  ActivationTape empty;
  Tensor grad({1, model->config.vocab_size});
  EXPECT_THROW(model->transformer->backward(empty, grad), std::exception);
}

}  // namespace
}  // namespace temoe
