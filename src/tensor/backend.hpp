#pragma once
// The kernel seam. Model code calls these operations over Tensors and never touches BLAS, OpenMP
// or CUDA itself, so a CUDA backend slots in beside the CPU one without changing the model.
// Index arguments (token ids, expert rows) live in host memory on every backend: they are small
// and produced by host-side routing logic.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "src/tensor/tensor.hpp"

namespace temoe {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // out[m, n] = sum_k a[m, k] * b[n, k] (+ out[m, n] when accumulate). b is a weight stored the
  // Hugging Face way, [out_features, in_features]. a: [M, K], b: [N, K], out: [M, N].
  virtual void matmul_transposed(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) = 0;

  // out = x * rsqrt(mean(x^2) + eps) * weight, row-wise. x, out: [M, D]; weight: [D].
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;

  // Rotary position embedding in the rotate-half convention, in place.
  // x: [B, T, heads, head_dim]; position of (b, t) is t.
  virtual void rotary(Tensor& x, double theta) = 0;

  // Causal grouped-query attention. q: [B, T, H, hd]; k, v: [B, T, KV, hd]; out: [B, T, H, hd].
  virtual void causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out) = 0;

  // ---- Incremental decoding (a KV cache): a chunk of S new positions per sequence.

  // rotary() for positions first_position + t: x: [B, S, heads, head_dim]. With first_position = 0
  // it is rotary() itself, bit for bit, so a decoded position is rotated exactly as in the forward.
  virtual void rotary_from(Tensor& x, double theta, int64_t first_position) = 0;

  // Causal attention of S new queries against a cache: query s of sequence b sits at position
  // first_position + s and attends to cached positions 0 .. first_position + s. q, out:
  // [B, S, H, hd]; k_cache, v_cache: [B, C, KV, hd] with C >= first_position + S, filled up to
  // there. Per query the arithmetic is causal_attention's, in the same order.
  virtual void cached_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                                Tensor& out) = 0;

  // Row-wise softmax in place. x: [M, N].
  virtual void softmax_rows(Tensor& x) = 0;

  // Row-wise top-k of x: [M, N] in descending order (ties to the lower index).
  // indices: M*k entries; values: [M, k].
  virtual void top_k_rows(const Tensor& x, int k, std::span<int32_t> indices, Tensor& values) = 0;

  // out = silu(gate) * up. gate, up, out: [M, F].
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  // out[i] = source[rows[i]]. source: [N, D]; out: [rows.size(), D].
  virtual void gather_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) = 0;

  // out[rows[i]] = source[i]. source: [rows.size(), D]; out: [N, D].
  virtual void scatter_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) = 0;

  // out[m] (+)= sum_s weights[m, s] * slots[m * S + s], s ascending, so the sum's order never
  // depends on how tokens were grouped by expert. slots: [M * S, D]; weights: [M, S]; out: [M, D].
  virtual void combine_slots(const Tensor& slots, const Tensor& weights, Tensor& out, bool accumulate) = 0;

  // The same with each slot's output read where it landed: slot i is rows[row_of_slot[i]]. Same
  // order of summation, so the same bits as combine_slots on the rows copied into slot order.
  // The default copies them into slot order first; backends override it to read in place.
  virtual void combine_slot_rows(const Tensor& rows, std::span<const int32_t> row_of_slot, const Tensor& weights,
                                 Tensor& out, bool accumulate) {
    Tensor slots({static_cast<int64_t>(row_of_slot.size()), rows.dim(1)}, rows.device());
    gather_rows(rows, row_of_slot, slots);
    combine_slots(slots, weights, out, accumulate);
  }

  // x += y. x, y: same shape.
  virtual void add_in_place(Tensor& x, const Tensor& y) = 0;

  // ---- Routing inside held masks, and the gate rules (MoeTransformer::moe). Both run where the
  // router's logits are, so that a device forward never copies them to the host.

  // x[m, n] = -inf wherever allowed[m * N + n] is 0 (the top-k that follows then never picks
  // those). x: [M, N]; allowed: M * N host flags, like every index argument of this seam.
  virtual void mask_rows(Tensor& x, std::span<const uint8_t> allowed) = 0;

  // How the combine weights of a token's k chosen experts follow from its router row.
  enum class TopKGate {
    probabilities,             // p[chosen]: the full softmax's own values (OLMoE, Qwen without norm_topk_prob)
    renormalised_probabilities,  // p[chosen] / sum over the k (Mixtral, norm_topk_prob)
    softmax_of_chosen_logits,  // softmax over the k chosen logits (gpt-oss)
  };
  // gates[m, s] for expert chosen[m * k + s] of row m, s ascending in each sum, in fp32 (the CPU's
  // arithmetic). logits, probabilities: [M, N] (probabilities = softmax of logits; only the rule
  // in use reads its input); chosen: M * k host ids; gates: [M, k].
  virtual void top_k_gates(const Tensor& logits, const Tensor& probabilities, std::span<const int32_t> chosen,
                           TopKGate rule, Tensor& gates) = 0;

  // ---- Self-distillation scores (src/learner/distillation_reward.hpp), per row of two logit
  // matrices, in double: where the logits are, so that only M numbers per field leave a device.
  struct LogitComparison {
    std::span<double> target_log_ratio;  // [M] log p_teacher(target) - log p_student(target)
    std::span<double> kl;                // [M] KL(p_teacher || p_student)
    std::span<int32_t> teacher_top;      // [M] argmax of the teacher's row (the first of ties)
    std::span<int32_t> student_top;      // [M] the student's
  };
  // teacher, student: [M, V]; targets: M host ids in [0, V); out: host spans of M entries (a
  // device backend synchronises).
  virtual void compare_logits(const Tensor& teacher, const Tensor& student, std::span<const int32_t> targets,
                              const LogitComparison& out) = 0;

  // ---- Architecture variants (Qwen2-MoE, Qwen3-MoE, gpt-oss). The CPU backend has them; a
  // backend without one refuses, naming the operation, instead of computing something else.

  // x[m, :] += bias. x: [M, N]; bias: [N].
  virtual void add_bias(Tensor& /*x*/, const Tensor& /*bias*/) { refuse("add_bias (projection biases)"); }

  // rotary_from() with given inverse frequencies (head_dim / 2 of them, e.g. YaRN's) and cos / sin
  // multiplied by `scale` (YaRN's attention factor). x: [B, S, heads, head_dim].
  virtual void rotary_with_frequencies(Tensor& /*x*/, std::span<const double> /*inverse_frequencies*/, double /*scale*/,
                                       int64_t /*first_position*/) {
    refuse("rotary_with_frequencies (YaRN rotary scaling)");
  }

  // cached_attention() where query position t sees only keys (t - window, t] (window 0: all of
  // [0, t]) and, with sinks ([H]), head h's softmax also has the logit sinks[h] in its denominator
  // (a "sink" that takes probability mass and contributes no value). With window 0 and no sinks it
  // is cached_attention itself, bit for bit.
  virtual void windowed_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t first_position,
                                  int64_t window, const Tensor* sinks, Tensor& out) {
    if (window == 0 && sinks == nullptr) {
      cached_attention(q, k_cache, v_cache, first_position, out);
      return;
    }
    refuse("windowed_attention (sliding windows, attention sinks)");
  }

  // gpt-oss's activation: out = (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g) with
  // g = min(gate, limit). gate, up, out: [M, F].
  virtual void clamped_swiglu(const Tensor& /*gate*/, const Tensor& /*up*/, float /*limit*/, float /*alpha*/,
                              Tensor& /*out*/) {
    refuse("clamped_swiglu (gpt-oss experts)");
  }

  // out[m, :] += sigmoid(gate_logits[m]) * values[m, :] (Qwen2-MoE's shared expert).
  // gate_logits: [M, 1]; values, out: [M, D].
  virtual void add_sigmoid_gated(const Tensor& /*gate_logits*/, const Tensor& /*values*/, Tensor& /*out*/) {
    refuse("add_sigmoid_gated (shared experts)");
  }

  // ---- Backward kernels (training). Every grad_* has the shape of the tensor it is the gradient
  // of. Input gradients are overwritten unless `accumulate` says otherwise; weight gradients are
  // always added to (so that they sum over micro-batches and expert groups). As in the forward,
  // every output element is computed by one thread in a fixed order, so results do not depend on
  // the thread count.

  // out[m, n] (+)= sum_k a[m, k] * b[k, n]: the input gradient dX = dY W of y = x W^T.
  // a: [M, K], b: [K, N], out: [M, N].
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) = 0;

  // out[n, k] (+)= sum_m a[m, n] * b[m, k]: the weight gradient dW = dY^T X of y = x W^T.
  // a: [M, N], b: [M, K], out: [N, K].
  virtual void matmul_transposed_left(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) = 0;

  // Backward of rms_norm: grad_x (+)= d/dx, grad_weight += d/dweight.
  // x, grad_out, grad_x: [M, D]; weight, grad_weight: [D].
  virtual void rms_norm_backward(const Tensor& x, const Tensor& weight, float eps, const Tensor& grad_out, Tensor& grad_x,
                                 Tensor& grad_weight, bool accumulate) = 0;

  // Backward of rotary, in place: rotates the gradient back (the transpose of the rotation).
  // grad: [B, T, heads, head_dim].
  virtual void rotary_backward(Tensor& grad, double theta) = 0;

  // Backward of causal_attention (probabilities recomputed from q and k). q, grad_q: [B, T, H, hd];
  // k, v, grad_k, grad_v: [B, T, KV, hd]; grad_out: [B, T, H, hd]. All three gradients overwritten.
  virtual void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& grad_out,
                                         Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) = 0;

  // Backward of softmax_rows: grad_logits = p * (grad_p - sum(p * grad_p)), row-wise.
  // probabilities, grad_probabilities, grad_logits: [M, N].
  virtual void softmax_rows_backward(const Tensor& probabilities, const Tensor& grad_probabilities,
                                     Tensor& grad_logits) = 0;

  // Backward of swiglu. gate, up, grad_out, grad_gate, grad_up: [M, F].
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& grad_out, Tensor& grad_gate,
                               Tensor& grad_up) = 0;

  // out[rows[i]] += source[i], i ascending (the backward of gather_rows; rows may repeat).
  // source: [rows.size(), D]; out: [N, D].
  virtual void scatter_add_rows(const Tensor& source, std::span<const int32_t> rows, Tensor& out) = 0;

  // Backward of combine_slots: grad_slots[m * S + s] = weights[m, s] * grad_out[m] and
  // grad_weights[m, s] = <slots[m * S + s], grad_out[m]>. slots, grad_slots: [M * S, D];
  // weights, grad_weights: [M, S]; grad_out: [M, D].
  virtual void combine_slots_backward(const Tensor& slots, const Tensor& weights, const Tensor& grad_out,
                                      Tensor& grad_slots, Tensor& grad_weights) = 0;

  // Softmax cross-entropy per row: losses[m] = logsumexp(logits[m]) - logits[m, targets[m]], and
  // grad_logits[m] = grad_scale * (softmax(logits[m]) - onehot(targets[m])). A negative target
  // marks a row without a label (loss 0, gradient 0). logits, grad_logits: [M, V]; losses: [M].
  virtual void cross_entropy(const Tensor& logits, std::span<const int32_t> targets, float grad_scale, Tensor& losses,
                             Tensor& grad_logits) = 0;

 protected:
  [[noreturn]] void refuse(const std::string& operation) const;
};

// The backend for a device: CPU always; CUDA when built with it.
std::unique_ptr<Backend> make_backend(Device device);

}  // namespace temoe
