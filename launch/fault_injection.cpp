#include "launch/fault_injection.hpp"

#include <cstdio>
#include <cstdlib>

#include "src/core/error.hpp"

namespace temoe::launch {

std::optional<FaultPoint> fault_point_from_environment() {
  const char* value = std::getenv("TEMOE_FAULT_INJECTION");
  if (value == nullptr || *value == '\0') return std::nullopt;
  FaultPoint point;
  long long layer = 0;
  if (std::sscanf(value, "%d:%lld", &point.rank, &layer) != 2) {
    TEMOE_FAIL("TEMOE_FAULT_INJECTION='" << value << "': expected RANK:LAYER");
  }
  point.layer = layer;
  return point;
}

void FaultInjectingExperts::run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                                Tensor& slots, const std::vector<uint8_t>* held_masks) {
  if (world_rank_ == fault_.rank && layer == fault_.layer) {
    TEMOE_FAIL("injected fault at MoE layer " << layer << " (TEMOE_FAULT_INJECTION)");
  }
  inner_->run(layer, hidden, experts, top_k, slots, held_masks);
}

bool FaultInjectingExperts::run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts,
                                        int64_t top_k, const std::vector<uint8_t>* held_masks, SlotRows& out) {
  if (world_rank_ == fault_.rank && layer == fault_.layer) {
    TEMOE_FAIL("injected fault at MoE layer " << layer << " (TEMOE_FAULT_INJECTION)");
  }
  return inner_->run_to_rows(layer, hidden, experts, top_k, held_masks, out);
}

}  // namespace temoe::launch
