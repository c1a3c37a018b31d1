#include "src/learner/controller_kernels.hpp"

#include "src/core/error.hpp"
#include "src/learner/controller_kernel_rows.hpp"

#if defined(TEMOE_WITH_CUDA)
#include "src/learner/cuda/controller_kernel_launch.hpp"
#endif

namespace temoe::controller_kernels {

namespace {

// Index i of `body` for every i in [0, count): a loop here, one CUDA thread each there.
template <typename Body>
void run(Device device, int64_t count, const Body& body, const char* name) {
  if (count <= 0) return;
  if (device == Device::cpu) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
#if defined(TEMOE_WITH_CUDA)
  launch_on_cuda(body, count, name);
#else
  TEMOE_CHECK(false, name << ": device " << to_string(device) << " asked for, but this build has no CUDA backend "
                          "(configure with -DTEMOE_CUDA=ON)");
#endif
}

}  // namespace

void router_coverage(Device device, const float* router_logits, int64_t rows, int64_t experts, int64_t k_hat,
                     float* probabilities, float* best) {
  TEMOE_CHECK(k_hat >= 1 && k_hat <= experts, "router_coverage: k_hat " << k_hat << " of " << experts << " experts");
  run(device, rows, RouterCoverageRow{router_logits, experts, k_hat, probabilities, best}, "router_coverage");
}

void heads_forward(Device device, const controller_math::HeadWeights& weights, const HeadBatch& batch, const HeadArrays& out) {
  run(device, batch.rows, HeadsForwardRow{weights, batch, out}, "heads_forward");
}

void heads_backward(Device device, const controller_math::HeadWeights& weights, int64_t rows, const HeadArrays& tape,
                    const float* d_beta, const float* d_q, const HeadGradients& out) {
  run(device, rows, HeadsBackwardRow{weights, tape, d_beta, d_q, out}, "heads_backward");
}

void head_weight_gradients(Device device, const controller_math::HeadWeights& weights, int head, int64_t rows,
                           const HeadArrays& tape, const HeadGradients& gradients, const HeadWeightGradients& out) {
  TEMOE_CHECK(head == 0 || head == 1, "head_weight_gradients: head " << head << " (0 termination, 1 Q)");
  if (device != Device::cpu) {
    run(device, head_weight_elements(weights), HeadWeightGradientElement{weights, head, rows, tape, gradients, out},
        "head_weight_gradients");
    return;
  }
  // Row-major on the host (contiguous rows; every element still sums its rows in row order).
  const int64_t d = weights.hidden_size, set = weights.set_dim, width = weights.width, input = weights.input();
  for (int64_t r = 0; r < rows; ++r) {
    const float g = gradients.head[r * 2 + head];
    if (g == 0.0f) continue;
    const float* d_pre = gradients.pre + r * 2 * width + head * width;
    const float* nz = tape.normed_set + r * set;
    const float* coverage = tape.coverage + r * controller_math::kCoverageInputs;
    const float* pre = (head == 0 ? tape.termination_hidden : tape.q_hidden) + r * width;
    out.b2[0] += g;
    for (int64_t j = 0; j < width; ++j) {
      out.w2[j] += g * controller_math::gelu(pre[j]);
      out.b1[j] += d_pre[j];
      float* w1_row = out.w1 + j * input + d;
      for (int64_t k = 0; k < set; ++k) w1_row[k] += d_pre[j] * nz[k];
      for (int64_t f = 0; f < controller_math::kCoverageInputs; ++f) w1_row[set + f] += d_pre[j] * coverage[f];
    }
  }
}

void set_encoding_gradients(Device device, const float* d_z, const int32_t* masks, int64_t rows, int64_t k_hat,
                            int64_t experts, int64_t set_dim, float* d_phi_out) {
  if (device != Device::cpu) {
    run(device, experts * set_dim, SetEncodingGradientElement{d_z, masks, rows, k_hat, set_dim, d_phi_out},
        "set_encoding_gradients");
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = d_z + r * set_dim;
    if (all_zero(row, set_dim)) continue;
    for (int64_t m = 0; m < k_hat; ++m) {
      const int32_t expert = masks[r * k_hat + m];
      TEMOE_CHECK(expert >= 0 && expert < experts, "set_encoding_gradients: row " << r << " holds expert " << expert
                                                   << ", outside [0, " << experts << ")");
      float* target = d_phi_out + static_cast<int64_t>(expert) * set_dim;
      for (int64_t j = 0; j < set_dim; ++j) target[j] += row[j] / static_cast<float>(k_hat);
    }
  }
}

void option_value_targets(Device device, const double* rewards, const double* q_previous, const double* beta,
                          const double* reload_value, const uint8_t* terminated, const uint8_t* document_end,
                          int64_t sequences, int64_t length, double gamma, double lambda, double eta, double* q_target,
                          uint8_t* valid) {
  run(device, sequences,
      OptionValueTargetsRow{rewards, q_previous, beta, reload_value, terminated, document_end, length, gamma, lambda, eta,
                            q_target, valid},
      "option_value_targets");
}

void plackett_luce(Device device, const float* logits, const int32_t* tuples, int64_t rows, int64_t experts, int64_t k,
                   double* log_probability, float* gradient, double* scratch) {
  TEMOE_CHECK(k >= 1 && k <= experts, "plackett_luce: tuples of " << k << " of " << experts << " experts");
  run(device, rows, PlackettLuceRow{logits, tuples, experts, k, log_probability, gradient, scratch}, "plackett_luce");
}

void decide(Device device, const DecisionStep& at, const float* beta, const float* logits, const int64_t* sequence_ids,
            double* keys, int32_t* held, int32_t* tuples, uint8_t* terminated) {
  TEMOE_CHECK(at.k_hat >= 1 && at.k_hat <= at.experts, "decide: k_hat " << at.k_hat << " of " << at.experts << " experts");
  run(device, at.batch, DecideRow{at, beta, logits, sequence_ids, keys, held, tuples, terminated}, "decide");
}

void target_terms(Device device, const TargetPositions& positions) {
  TEMOE_CHECK(positions.time >= 1, "target_terms: sequences of " << positions.time << " positions");
  run(device, positions.count, TargetTermsRow{positions}, "target_terms");
}

void gradient_terms(Device device, const GradientPositions& positions) {
  TEMOE_CHECK(positions.time >= 1, "gradient_terms: sequences of " << positions.time << " positions");
  run(device, positions.count, GradientTermsRow{positions}, "gradient_terms");
}

void column_sums(Device device, const double* values, int64_t rows, int64_t columns, double* sums) {
  run(device, columns, ColumnSumElement{values, rows, columns, sums}, "column_sums");
}

}  // namespace temoe::controller_kernels
