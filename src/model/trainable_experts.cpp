#include "src/model/trainable_experts.hpp"

#include "src/core/error.hpp"

namespace temoe {

void apply_expert_recorded(Backend& backend, const ExpertWeights& expert, const Tensor& input,
                           std::span<const int32_t> rows, std::span<const int32_t> output_rows, Tensor& output,
                           ExpertGroupTape& tape) {
  tape.rows.assign(rows.begin(), rows.end());
  tape.outputs.assign(output_rows.begin(), output_rows.end());
  const auto count = static_cast<int64_t>(rows.size());
  if (count == 0) return;
  const int64_t width = input.dim(1), ffn = expert.gate_proj.dim(0);
  const Device device = backend.device();
  // The same kernels in the same order as apply_expert, so the outputs are bit-identical.
  Tensor gathered({count, width}, device);
  backend.gather_rows(input, rows, gathered);
  tape.gate = Tensor({count, ffn}, device);
  tape.up = Tensor({count, ffn}, device);
  backend.matmul_transposed(gathered, expert.gate_proj, tape.gate, false);
  backend.matmul_transposed(gathered, expert.up_proj, tape.up, false);
  Tensor activation({count, ffn}, device);
  backend.swiglu(tape.gate, tape.up, activation);
  Tensor result({count, width}, device);
  backend.matmul_transposed(activation, expert.down_proj, result, false);
  backend.scatter_rows(result, output_rows, output);
}

void expert_backward(Backend& backend, const ExpertWeights& expert, ExpertWeights& gradients, const Tensor& input,
                     const ExpertGroupTape& tape, const Tensor& grad_output, Tensor& grad_input) {
  const auto count = static_cast<int64_t>(tape.rows.size());
  if (count == 0) return;
  const int64_t width = input.dim(1), ffn = expert.gate_proj.dim(0);
  const Device device = backend.device();
  // y = (silu(x Wg^T) * (x Wu^T)) Wd^T, for the rows this expert computed.
  Tensor grad_result({count, width}, device);
  backend.gather_rows(grad_output, tape.outputs, grad_result);
  Tensor activation({count, ffn}, device);
  backend.swiglu(tape.gate, tape.up, activation);
  backend.matmul_transposed_left(grad_result, activation, gradients.down_proj, true);  // dWd += dy^T a
  Tensor grad_activation({count, ffn}, device);
  backend.matmul(grad_result, expert.down_proj, grad_activation, false);  // da = dy Wd
  Tensor grad_gate({count, ffn}, device), grad_up({count, ffn}, device);
  backend.swiglu_backward(tape.gate, tape.up, grad_activation, grad_gate, grad_up);
  Tensor gathered({count, width}, device);
  backend.gather_rows(input, tape.rows, gathered);
  backend.matmul_transposed_left(grad_gate, gathered, gradients.gate_proj, true);  // dWg += dg^T x
  backend.matmul_transposed_left(grad_up, gathered, gradients.up_proj, true);      // dWu += du^T x
  Tensor grad_gathered({count, width}, device);
  backend.matmul(grad_gate, expert.gate_proj, grad_gathered, false);  // dx = dg Wg + du Wu
  backend.matmul(grad_up, expert.up_proj, grad_gathered, true);
  backend.scatter_rows(grad_gathered, tape.outputs, grad_input);
}

void LocalTrainableExperts::forward(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts,
                                    int64_t top_k, Tensor& slots, ExpertLayerTape& tape) {
  const int64_t tokens = hidden.dim(0);
  TEMOE_CHECK(static_cast<int64_t>(experts.size()) == tokens * top_k,
              "LocalTrainableExperts: " << experts.size() << " expert ids for " << tokens << " tokens x k = " << top_k);
  const ExpertSet& range = weights_.local_experts;
  // Grouped exactly as LocalExperts groups them.
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(range.count())), slot_rows(rows.size());
  for (int64_t slot = 0; slot < tokens * top_k; ++slot) {
    const int32_t expert = experts[static_cast<size_t>(slot)];
    TEMOE_CHECK(range.contains(expert), "LocalTrainableExperts holds experts " << range.describe() << " but a token was routed to expert " << expert);
    rows[static_cast<size_t>(range.local_index(expert))].push_back(static_cast<int32_t>(slot / top_k));
    slot_rows[static_cast<size_t>(range.local_index(expert))].push_back(static_cast<int32_t>(slot));
  }
  tape.input = hidden;  // shares storage: the caller keeps the hidden states alive in its tape
  tape.experts.assign(rows.size(), {});
  const auto& layer_weights = weights_.layers.at(static_cast<size_t>(layer));
  for (size_t local = 0; local < rows.size(); ++local) {
    apply_expert_recorded(backend_, layer_weights.experts[local], hidden, rows[local], slot_rows[local], slots,
                          tape.experts[local]);
  }
}

void LocalTrainableExperts::backward(int64_t layer, const ExpertLayerTape& tape, const Tensor& grad_slots,
                                     Tensor& grad_slot_inputs) {
  check_shape(grad_slot_inputs, grad_slots.shape(), "LocalTrainableExperts grad_slot_inputs");
  const auto& layer_weights = weights_.layers.at(static_cast<size_t>(layer));
  auto& layer_gradients = gradients_.layers.at(static_cast<size_t>(layer));
  for (size_t local = 0; local < tape.experts.size(); ++local) {
    expert_backward(backend_, layer_weights.experts[local], layer_gradients.experts[local], tape.input,
                    tape.experts[local], grad_slots, grad_slot_inputs);
  }
}

}  // namespace temoe
