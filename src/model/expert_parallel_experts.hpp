#pragma once
// Experts spread over an expert-parallel group: tokens travel to the ranks that own their experts
// through the token dispatcher (parallel/) and the results come back.
#include "parallel/token_dispatcher.hpp"
#include "src/model/expert_executor.hpp"

namespace temoe {

class ExpertParallelExperts final : public ExpertExecutor {
 public:
  // `weights` holds this rank's experts: those the dispatcher's placement assigns to it.
  ExpertParallelExperts(Backend& backend, const ModelWeights& weights, TokenDispatcher& dispatcher);
  void run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
           const std::vector<uint8_t>* held_masks) override;
  bool run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                   const std::vector<uint8_t>* held_masks, SlotRows& out) override;

 private:
  Backend& backend_;
  const ModelWeights& weights_;
  TokenDispatcher& dispatcher_;
};

}  // namespace temoe
