#pragma once
// A hidden test hook: TEMOE_FAULT_INJECTION="RANK:LAYER" makes world rank RANK throw when it
// reaches MoE layer LAYER, so tests can prove that a failure on one rank ends the whole job with
// that rank named instead of leaving the others hanging in a collective.
#include <memory>
#include <optional>

#include "src/model/expert_executor.hpp"

namespace temoe::launch {

struct FaultPoint {
  int rank = 0;
  int64_t layer = 0;
};

std::optional<FaultPoint> fault_point_from_environment();

// Wraps `inner`; throws at the fault point on `world_rank`, forwards every other call.
class FaultInjectingExperts final : public ExpertExecutor {
 public:
  FaultInjectingExperts(std::unique_ptr<ExpertExecutor> inner, FaultPoint fault, int world_rank)
      : inner_(std::move(inner)), fault_(fault), world_rank_(world_rank) {}
  void run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
           const std::vector<uint8_t>* held_masks) override;
  bool run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                   const std::vector<uint8_t>* held_masks, SlotRows& out) override;

 private:
  std::unique_ptr<ExpertExecutor> inner_;
  FaultPoint fault_;
  int world_rank_;
};

}  // namespace temoe::launch
