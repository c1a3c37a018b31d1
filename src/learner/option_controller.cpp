#include "src/learner/option_controller.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/learner/controller_kernels.hpp"
#include "src/learner/controller_math.hpp"
#include "src/tensor/cpu_backend.hpp"

namespace temoe {

namespace {

constexpr double kScaleFloor = 1e-4;  // sigma^2 >= this: a constant target does not divide by zero

using controller_math::gelu;
using controller_math::gelu_derivative;

// y = W x + b for one row; W: [out, in] row-major. Accumulates in double so the result does not
// depend on vectorisation.
void linear(const float* w, const float* b, const float* x, float* y, int64_t out, int64_t in) {
  for (int64_t o = 0; o < out; ++o) {
    double sum = b ? b[o] : 0.0;
    const float* row = w + o * in;
    for (int64_t i = 0; i < in; ++i) sum += static_cast<double>(row[i]) * x[i];
    y[o] = static_cast<float>(sum);
  }
}

// Gradients of y = W x + b given dy: dW += dy x^T, db += dy, dx += W^T dy (dx may be null).
void linear_backward(const float* w, const float* x, const float* dy, float* dw, float* db, float* dx, int64_t out,
                     int64_t in) {
  for (int64_t o = 0; o < out; ++o) {
    const float g = dy[o];
    if (g == 0.0f) continue;
    if (db) db[o] += g;
    float* dw_row = dw + o * in;
    const float* w_row = w + o * in;
    for (int64_t i = 0; i < in; ++i) {
      dw_row[i] += g * x[i];
      if (dx) dx[i] += g * w_row[i];
    }
  }
}

void fill_normal(Parameter& parameter, double scale, uint64_t seed, uint64_t key) {
  CounterRandom random(seed, {key});
  for (int64_t i = 0; i < parameter.value.numel(); ++i) parameter.value.data()[i] = static_cast<float>(scale * random.normal());
}

}  // namespace

std::string controller_prefix(int64_t layer) { return "layer" + std::to_string(layer) + "."; }

bool is_value_statistic(const std::string& name) {
  return name.ends_with(".q.target_mean") || name.ends_with(".q.target_scale") || name.ends_with(".q.target_updates");
}

bool is_selection_parameter(const std::string& name) {
  return name.ends_with(".selection.delta_w") || name.ends_with(".selection.delta_b");
}

OptionController::OptionController(ParameterSet& parameters, int64_t layer, int64_t hidden_size, int64_t num_experts,
                                   const ControllerConfig& config, uint64_t seed)
    : parameters_(parameters), layer_(layer), hidden_size_(hidden_size), num_experts_(num_experts), config_(config) {
  TEMOE_CHECK(config.k_hat >= 1 && config.k_hat <= num_experts,
              "controller.k_hat = " << config.k_hat << " must lie in [1, " << num_experts << "] (the layer's experts)");
  const std::string prefix = controller_prefix(layer);
  const int64_t embedding = config.embedding_dim, set = config.set_dim, width = config.hidden;
  const int64_t input = hidden_size + set + kCoverageInputs;
  const auto key = [&](uint64_t piece) { return static_cast<uint64_t>(layer) * 64 + piece; };
  fill_normal(parameters.add(prefix + "expert_embedding", {num_experts, embedding}), 1.0, seed, key(0));
  fill_normal(parameters.add(prefix + "phi.w1", {width, embedding}), 1.0 / std::sqrt(double(embedding)), seed, key(1));
  parameters.add(prefix + "phi.b1", {width});
  fill_normal(parameters.add(prefix + "phi.w2", {set, width}), 1.0 / std::sqrt(double(width)), seed, key(2));
  parameters.add(prefix + "phi.b2", {set});
  fill_normal(parameters.add(prefix + "termination.w1", {width, input}), 1.0 / std::sqrt(double(input)), seed, key(3));
  parameters.add(prefix + "termination.b1", {width});
  // A small output layer: every token starts near the initial bias, i.e. about 5% switching.
  fill_normal(parameters.add(prefix + "termination.w2", {1, width}), 0.01 / std::sqrt(double(width)), seed, key(4));
  parameters.add(prefix + "termination.b2", {1}).value.fill(static_cast<float>(config.termination_bias));
  fill_normal(parameters.add(prefix + "q.w1", {width, input}), 1.0 / std::sqrt(double(input)), seed, key(5));
  parameters.add(prefix + "q.b1", {width});
  fill_normal(parameters.add(prefix + "q.w2", {1, width}), 0.01 / std::sqrt(double(width)), seed, key(6));
  parameters.add(prefix + "q.b2", {1});
  parameters.add(prefix + "q.target_mean", {1});
  parameters.add(prefix + "q.target_scale", {1}).value.fill(1.0f);
  parameters.add(prefix + "q.target_updates", {1});
  parameters.add(prefix + "selection.delta_w", {num_experts, hidden_size});
  parameters.add(prefix + "selection.delta_b", {num_experts});
}

OptionController::Pieces OptionController::pieces() const {
  const std::string prefix = controller_prefix(layer_);
  const auto get = [&](const char* name) { return &parameters_.get(prefix + name); };
  return {get("expert_embedding"), get("phi.w1"), get("phi.b1"), get("phi.w2"), get("phi.b2"),
          get("termination.w1"), get("termination.b1"), get("termination.w2"), get("termination.b2"),
          get("q.w1"), get("q.b1"), get("q.w2"), get("q.b2"), get("q.target_mean"), get("q.target_scale"), get("q.target_updates"),
          get("selection.delta_w"), get("selection.delta_b")};
}

controller_math::HeadWeights OptionController::head_weights() const {
  const Pieces p = pieces();
  return {p.termination_w1->value.data(), p.termination_b1->value.data(), p.termination_w2->value.data(),
          p.termination_b2->value.data(), p.q_w1->value.data(), p.q_b1->value.data(), p.q_w2->value.data(),
          p.q_b2->value.data(), p.q_target_mean->value.data(), p.q_target_scale->value.data(), hidden_size_,
          config_.set_dim, config_.hidden, config_.k_hat, num_experts_};
}

namespace {

// Rows [0, rows) x columns [first, first + width) of a row-major [rows, stride] matrix, copied.
Tensor columns(const Tensor& matrix, int64_t first, int64_t width) {
  const int64_t rows = matrix.dim(0), stride = matrix.dim(1);
  Tensor out({rows, width});
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(matrix.data() + r * stride + first, matrix.data() + r * stride + first + width, out.data() + r * width);
  }
  return out;
}

Tensor transposed(const float* data, int64_t rows, int64_t cols) {
  Tensor out({cols, rows});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.data()[c * rows + r] = data[r * cols + c];
  }
  return out;
}

}  // namespace

HiddenProjection OptionController::project(std::span<const float> hidden, int64_t rows,
                                           std::span<const float> router_logits) const {
  const int64_t d = hidden_size_, e = num_experts_;
  const int64_t embedding = config_.embedding_dim, set = config_.set_dim, width = config_.hidden;
  TEMOE_CHECK(static_cast<int64_t>(hidden.size()) == rows * d,
              "controller layer " << layer_ << ": hidden has " << hidden.size() << " values for " << rows << " rows x " << d);
  const bool with_selection = !router_logits.empty();
  TEMOE_CHECK(!with_selection || static_cast<int64_t>(router_logits.size()) == rows * e,
              "controller layer " << layer_ << ": " << router_logits.size() << " router logits for " << rows << " rows x "
                                  << e << " experts");
  const Pieces p = pieces();
  CpuBackend backend;
  HiddenProjection out;
  out.rows = rows;
  // phi(e_i) for every expert once: a mask's encoding is the mean of k_hat rows of this table.
  out.phi_hidden.resize(static_cast<size_t>(e * width));
  out.phi_out.resize(static_cast<size_t>(e * set));
  std::vector<float> activated(static_cast<size_t>(width));
  for (int64_t i = 0; i < e; ++i) {
    float* pre = out.phi_hidden.data() + i * width;
    linear(p.phi_w1->value.data(), p.phi_b1->value.data(), p.expert_embedding->value.data() + i * embedding, pre, width, embedding);
    for (int64_t j = 0; j < width; ++j) activated[j] = gelu(pre[j]);
    linear(p.phi_w2->value.data(), p.phi_b2->value.data(), activated.data(), out.phi_out.data() + i * set, set, width);
  }
  out.normed_hidden = Tensor({rows, d});
  for (int64_t r = 0; r < rows; ++r) {
    const float* h = hidden.data() + r * d;
    const float scale = controller_math::rms_scale(h, d);
    for (int64_t i = 0; i < d; ++i) out.normed_hidden.data()[r * d + i] = h[i] * scale;
  }
  // The h-parts of both MLPs' first layers, for all rows in one GEMM: [rows, 2 * width].
  Tensor stacked({2 * width, d});
  const Tensor termination_h = columns(p.termination_w1->value, 0, d), q_h = columns(p.q_w1->value, 0, d);
  std::copy(termination_h.data(), termination_h.data() + width * d, stacked.data());
  std::copy(q_h.data(), q_h.data() + width * d, stacked.data() + width * d);
  out.projected = Tensor({rows, 2 * width});
  if (rows > 0) backend.matmul_transposed(out.normed_hidden, stacked, out.projected, false);
  if (with_selection) {
    // The router's distribution and the mass of its best k_hat experts, for the coverage inputs.
    out.router_probabilities.resize(static_cast<size_t>(rows * e));
    out.best_coverage.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      out.best_coverage[static_cast<size_t>(r)] = controller_math::router_coverage_row(
          router_logits.data() + r * e, e, config_.k_hat, out.router_probabilities.data() + r * e);
    }
    out.selection_logits.resize(static_cast<size_t>(rows * e));
    Tensor logits({rows, e});
    const Tensor h_tensor = Tensor::from_vector({rows, d}, std::vector<float>(hidden.begin(), hidden.end()));
    if (rows > 0) backend.matmul_transposed(h_tensor, p.selection_w->value, logits, false);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < e; ++i) {
        out.selection_logits[r * e + i] = router_logits[r * e + i] + (logits.data()[r * e + i] + p.selection_b->value.data()[i]);
      }
    }
  }
  return out;
}

ControllerEvaluation OptionController::evaluate(std::span<const float> hidden, std::span<const int32_t> masks,
                                                int64_t rows, std::span<const float> router_logits) const {
  return evaluate_rows(project(hidden, rows, router_logits), {}, masks);
}

ControllerEvaluation OptionController::evaluate_rows(const HiddenProjection& projection,
                                                     std::span<const int64_t> row_indices,
                                                     std::span<const int32_t> masks) const {
  const int64_t d = hidden_size_, e = num_experts_, k_hat = config_.k_hat;
  const int64_t set = config_.set_dim, width = config_.hidden;
  const bool all_rows = row_indices.empty();
  const int64_t rows = all_rows ? projection.rows : static_cast<int64_t>(row_indices.size());
  TEMOE_CHECK(static_cast<int64_t>(masks.size()) == rows * k_hat,
              "controller layer " << layer_ << ": " << masks.size() << " mask ids for " << rows << " rows x k_hat " << k_hat);
  const auto source = [&](int64_t r) { return all_rows ? r : row_indices[static_cast<size_t>(r)]; };
  ControllerEvaluation out;
  out.rows = rows;
  out.phi_hidden = projection.phi_hidden;
  out.phi_out = projection.phi_out;
  if (all_rows) {
    out.normed_hidden = projection.normed_hidden;
    out.selection_logits = projection.selection_logits;
  } else {
    out.normed_hidden = Tensor({rows, d});
    if (!projection.selection_logits.empty()) out.selection_logits.resize(static_cast<size_t>(rows * e));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t from = source(r);
      std::copy(projection.normed_hidden.data() + from * d, projection.normed_hidden.data() + (from + 1) * d,
                out.normed_hidden.data() + r * d);
      if (!out.selection_logits.empty()) {
        std::copy(projection.selection_logits.begin() + from * e, projection.selection_logits.begin() + (from + 1) * e,
                  out.selection_logits.begin() + r * e);
      }
    }
  }
  out.beta.resize(static_cast<size_t>(rows));
  out.q.resize(static_cast<size_t>(rows));
  out.normed_set.resize(static_cast<size_t>(rows * set));
  out.set_norm_scale.resize(static_cast<size_t>(rows));
  out.coverage.assign(static_cast<size_t>(rows * kCoverageInputs), 0.0f);
  out.termination_hidden.resize(static_cast<size_t>(rows * width));
  out.q_hidden.resize(static_cast<size_t>(rows * width));
  const controller_math::HeadWeights weights = head_weights();
  for (int64_t r = 0; r < rows; ++r) {
    const bool with_coverage = !projection.router_probabilities.empty();
    controller_math::heads_forward_row(
        weights, projection.projected.data() + source(r) * (2 * width), out.phi_out.data(),
        masks.data() + r * k_hat, with_coverage ? projection.router_probabilities.data() + source(r) * e : nullptr,
        with_coverage ? projection.best_coverage[static_cast<size_t>(source(r))] : 0.0f,
        {out.beta.data() + r, out.q.data() + r, out.normed_set.data() + r * set, out.set_norm_scale.data() + r,
         out.coverage.data() + r * kCoverageInputs, out.termination_hidden.data() + r * width, out.q_hidden.data() + r * width});
  }
  return out;
}

void OptionController::backward(const ControllerEvaluation& evaluation, std::span<const float> hidden,
                                std::span<const int32_t> masks, std::span<const float> d_beta, std::span<const float> d_q,
                                std::span<const float> d_selection) {
  const int64_t d = hidden_size_, e = num_experts_, k_hat = config_.k_hat;
  const int64_t embedding = config_.embedding_dim, set = config_.set_dim, width = config_.hidden;
  const int64_t input = d + set + kCoverageInputs;
  const int64_t rows = evaluation.rows;
  std::vector<float> act(static_cast<size_t>(width));
  const Pieces p = pieces();
  CpuBackend backend;
  // Gradients of the h-side pre-activations, [rows, 2 * width]: termination, Q.
  std::vector<float> d_projected(static_cast<size_t>(rows * (2 * width)), 0.0f);
  std::vector<float> d_phi_out(static_cast<size_t>(e * set), 0.0f);
  std::vector<float> d_z(static_cast<size_t>(rows * set)), head_gradients(static_cast<size_t>(rows * 2));
  const controller_math::HeadWeights weights = head_weights();
  // The evaluation's arrays as the row functions' (const: the backward only reads them).
  const auto tape_pointer = [](const std::vector<float>& values) { return const_cast<float*>(values.data()); };
  const controller_kernels::HeadArrays tape{tape_pointer(evaluation.beta),           tape_pointer(evaluation.q),
                                            tape_pointer(evaluation.normed_set),     tape_pointer(evaluation.set_norm_scale),
                                            tape_pointer(evaluation.coverage),       tape_pointer(evaluation.termination_hidden),
                                            tape_pointer(evaluation.q_hidden)};
  const controller_kernels::HeadGradients gradients{head_gradients.data(), d_projected.data(), d_z.data()};
  controller_kernels::heads_backward(Device::cpu, weights, rows, tape, d_beta.empty() ? nullptr : d_beta.data(),
                                     d_q.empty() ? nullptr : d_q.data(), gradients);
  Parameter* const heads[2][4] = {{p.termination_w1, p.termination_b1, p.termination_w2, p.termination_b2},
                                        {p.q_w1, p.q_b1, p.q_w2, p.q_b2}};
  for (int head = 0; head < 2; ++head) {
    if ((head == 0 ? d_beta : d_q).empty()) continue;
    const controller_kernels::HeadWeightGradients out{heads[head][0]->gradient.data(), heads[head][1]->gradient.data(),
                                                      heads[head][2]->gradient.data(), heads[head][3]->gradient.data()};
    controller_kernels::head_weight_gradients(Device::cpu, weights, head, rows, tape, gradients, out);
  }
  controller_kernels::set_encoding_gradients(Device::cpu, d_z.data(), masks.data(), rows, k_hat, e, set, d_phi_out.data());
  if (rows > 0) {
    // Weight gradients of the h-parts: [2 * width, D] = d_projected^T . RMSNorm(h), one GEMM.
    const Tensor d_projected_t = transposed(d_projected.data(), rows, 2 * width);
    const Tensor normed_t = transposed(evaluation.normed_hidden.data(), rows, d);
    Tensor stacked_grad({2 * width, d});
    backend.matmul_transposed(d_projected_t, normed_t, stacked_grad, false);
    for (int64_t o = 0; o < width; ++o) {
      for (int64_t i = 0; i < d; ++i) {
        p.termination_w1->gradient.data()[o * input + i] += stacked_grad.data()[o * d + i];
        p.q_w1->gradient.data()[o * input + i] += stacked_grad.data()[(width + o) * d + i];
      }
    }
    if (!d_selection.empty()) {
      // [E, D] += d_selection^T . h, and the bias.
      const Tensor d_selection_t = transposed(d_selection.data(), rows, e);
      const Tensor hidden_t = transposed(hidden.data(), rows, d);
      Tensor selection_grad({e, d});
      backend.matmul_transposed(d_selection_t, hidden_t, selection_grad, false);
      for (int64_t i = 0; i < e * d; ++i) p.selection_w->gradient.data()[i] += selection_grad.data()[i];
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < e; ++i) p.selection_b->gradient.data()[i] += d_selection[static_cast<size_t>(r * e + i)];
      }
    }
  }
  // Through phi for every expert that received gradient.
  std::vector<float> d_act(static_cast<size_t>(width));
  for (int64_t i = 0; i < e; ++i) {
    const float* dy = d_phi_out.data() + i * set;
    bool any = false;
    for (int64_t j = 0; j < set && !any; ++j) any = dy[j] != 0.0f;
    if (!any) continue;
    const float* pre = evaluation.phi_hidden.data() + i * width;
    for (int64_t j = 0; j < width; ++j) act[j] = gelu(pre[j]);
    std::fill(d_act.begin(), d_act.end(), 0.0f);
    linear_backward(p.phi_w2->value.data(), act.data(), dy, p.phi_w2->gradient.data(), p.phi_b2->gradient.data(),
                    d_act.data(), set, width);
    for (int64_t j = 0; j < width; ++j) d_act[j] *= gelu_derivative(pre[j]);
    linear_backward(p.phi_w1->value.data(), p.expert_embedding->value.data() + i * embedding, d_act.data(),
                    p.phi_w1->gradient.data(), p.phi_b1->gradient.data(),
                    p.expert_embedding->gradient.data() + i * embedding, width, embedding);
  }
}

double OptionController::value_scale() const { return pieces().q_target_scale->value.data()[0]; }

void OptionController::update_value_statistics(double batch_mean, double batch_second_moment, double rate) {
  const Pieces p = pieces();
  float& mean = p.q_target_mean->value.data()[0];
  float& scale = p.q_target_scale->value.data()[0];
  float& updates = p.q_target_updates->value.data()[0];
  const double old_mean = mean, old_scale = scale;
  // The moments are re-derived from the stored statistics, so that a resumed run continues
  // exactly: nothing lives outside the parameter set (and so outside the checkpoint).
  double first = old_mean, second = old_scale * old_scale - kScaleFloor + old_mean * old_mean;
  if (updates == 0.0f) {  // the first batch sets the statistics outright
    first = batch_mean;
    second = batch_second_moment;
  } else {
    first += rate * (batch_mean - first);
    second += rate * (batch_second_moment - second);
  }
  updates += 1.0f;
  const double new_scale = std::sqrt(std::max(second - first * first, 0.0) + kScaleFloor);
  // Preserve every output: mean + scale * (w2 a + b2) is the same function after the change.
  float* w2 = p.q_w2->value.data();
  for (int64_t j = 0; j < config_.hidden; ++j) w2[j] = static_cast<float>(w2[j] * old_scale / new_scale);
  float& b2 = p.q_b2->value.data()[0];
  b2 = static_cast<float>((old_scale * b2 + old_mean - first) / new_scale);
  mean = static_cast<float>(first);
  scale = static_cast<float>(new_scale);
}

void OptionController::clamp_termination_bias() {
  float& bias = parameters_.get(controller_prefix(layer_) + "termination.b2").value.data()[0];
  bias = std::clamp(bias, static_cast<float>(config_.termination_bias_min), static_cast<float>(config_.termination_bias_max));
}

}  // namespace temoe
