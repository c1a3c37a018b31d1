#include "src/model/expert_executor.hpp"

#include <vector>

#include "src/core/error.hpp"

namespace temoe {

void apply_expert(Backend& backend, const ExpertWeights& expert, const Tensor& hidden, std::span<const int32_t> rows,
                  std::span<const int32_t> slot_rows, Tensor& slots) {
  const auto count = static_cast<int64_t>(rows.size());
  if (count == 0) return;
  const int64_t width = hidden.dim(1), ffn = expert.gate_proj.dim(0);
  Tensor input({count, width}, backend.device());
  backend.gather_rows(hidden, rows, input);
  Tensor gate({count, ffn}, backend.device()), up({count, ffn}, backend.device());
  backend.matmul_transposed(input, expert.gate_proj, gate, false);
  backend.matmul_transposed(input, expert.up_proj, up, false);
  backend.swiglu(gate, up, gate);
  Tensor output({count, width}, backend.device());
  backend.matmul_transposed(gate, expert.down_proj, output, false);
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
    apply_expert(backend_, layer_weights.experts[local], hidden, rows[local], slot_rows[local], slots);
  }
}

}  // namespace temoe
