#include "src/model/expert_executor.hpp"

#include <vector>

#include "src/core/error.hpp"

namespace temoe {

void apply_ffn(Backend& backend, const ExpertWeights& ffn, const Tensor& input, Tensor& output,
               const ExpertActivation& activation, bool with_adapters) {
  const int64_t count = input.dim(0), width = ffn.gate_proj.dim(0);
  Tensor gate({count, width}, backend.device()), up({count, width}, backend.device());
  backend.matmul_transposed(input, ffn.gate_proj, gate, false);
  backend.matmul_transposed(input, ffn.up_proj, up, false);
  if (with_adapters) {
    apply_lora(backend, ffn.gate_lora, input, gate);
    apply_lora(backend, ffn.up_lora, input, up);
  }
  if (ffn.gate_bias.defined()) backend.add_bias(gate, ffn.gate_bias);
  if (ffn.up_bias.defined()) backend.add_bias(up, ffn.up_bias);
  if (activation.clamped) {
    backend.clamped_swiglu(gate, up, activation.limit, activation.alpha, gate);
  } else {
    backend.swiglu(gate, up, gate);
  }
  backend.matmul_transposed(gate, ffn.down_proj, output, false);
  if (with_adapters) apply_lora(backend, ffn.down_lora, gate, output);
  if (ffn.down_bias.defined()) backend.add_bias(output, ffn.down_bias);
}

void apply_expert(Backend& backend, const ExpertWeights& expert, const Tensor& hidden, std::span<const int32_t> rows,
                  std::span<const int32_t> slot_rows, Tensor& slots, const ExpertActivation& activation,
                  bool with_adapters) {
  const auto count = static_cast<int64_t>(rows.size());
  if (count == 0) return;
  const int64_t width = hidden.dim(1);
  Tensor input({count, width}, backend.device());
  backend.gather_rows(hidden, rows, input);
  Tensor output({count, width}, backend.device());
  apply_ffn(backend, expert, input, output, activation, with_adapters);
  backend.scatter_rows(output, slot_rows, slots);
}

void LocalExperts::run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                       Tensor& slots, const std::vector<uint8_t>* /*held_masks: every expert is here*/) {
  const int64_t tokens = hidden.dim(0);
  TEMOE_CHECK(static_cast<int64_t>(experts.size()) == tokens * top_k,
              "LocalExperts: " << experts.size() << " expert ids for " << tokens << " tokens x k = " << top_k);
  const ExpertSet& range = weights_.local_experts;
  std::vector<std::vector<int32_t>> rows(static_cast<size_t>(range.count())), slot_rows(rows.size());
  for (int64_t slot = 0; slot < tokens * top_k; ++slot) {
    const int32_t expert = experts[static_cast<size_t>(slot)];
    TEMOE_CHECK(range.contains(expert), "LocalExperts holds experts " << range.describe() << " but a token was routed to expert " << expert);
    rows[static_cast<size_t>(range.local_index(expert))].push_back(static_cast<int32_t>(slot / top_k));
    slot_rows[static_cast<size_t>(range.local_index(expert))].push_back(static_cast<int32_t>(slot));
  }
  const auto& layer_weights = weights_.layers.at(static_cast<size_t>(layer));
  for (size_t local = 0; local < rows.size(); ++local) {
    apply_expert(backend_, layer_weights.experts[local], hidden, rows[local], slot_rows[local], slots,
                 weights_.expert_activation, adapters_enabled());
  }
}

}  // namespace temoe
