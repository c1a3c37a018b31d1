#pragma once
// Trainable experts spread over an expert-parallel group: tokens travel to the experts' owners by
// the token dispatcher's exchange, gradients come back by its reverse (dispatch_backward); the
// expert weight gradients stay on the owner.
#include "parallel/token_dispatcher.hpp"
#include "src/model/trainable_experts.hpp"

namespace temoe {

// Experts spread over an expert-parallel group: the forward and backward exchanges of the
// TokenDispatcher, with the local experts' work done here.
class ExpertParallelTrainableExperts final : public TrainableExperts {
 public:
  ExpertParallelTrainableExperts(Backend& backend, const ModelWeights& weights, ModelWeights& gradients,
                                 TokenDispatcher& dispatcher);
  void forward(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
               ExpertLayerTape& tape) override;
  void backward(int64_t layer, const ExpertLayerTape& tape, const Tensor& grad_slots, Tensor& grad_slot_inputs) override;

 private:
  Backend& backend_;
  const ModelWeights& weights_;
  ModelWeights& gradients_;
  TokenDispatcher& dispatcher_;
};

}  // namespace temoe
