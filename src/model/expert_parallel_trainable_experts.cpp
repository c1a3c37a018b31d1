#include "src/model/expert_parallel_trainable_experts.hpp"

#include "src/core/error.hpp"

namespace temoe {

ExpertParallelTrainableExperts::ExpertParallelTrainableExperts(Backend& backend, const ModelWeights& weights,
                                                               ModelWeights& gradients, TokenDispatcher& dispatcher)
    : backend_(backend), weights_(weights), gradients_(gradients), dispatcher_(dispatcher) {
  const auto own = dispatcher.placement().experts_of(dispatcher.rank());
  TEMOE_CHECK(own == weights.local_experts.ids(), "rank " << dispatcher.rank() << ": the loaded experts "
                                                          << weights.local_experts.describe()
                                                          << " are not what the dispatcher's placement assigns to this rank");
}

void ExpertParallelTrainableExperts::forward(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts,
                                             int64_t top_k, Tensor& slots, ExpertLayerTape& tape) {
  const auto& layer_weights = weights_.layers.at(static_cast<size_t>(layer));
  tape.experts.assign(static_cast<size_t>(weights_.local_experts.count()), {});
  dispatcher_.dispatch(
      hidden, experts, top_k, slots,
      [&](int64_t local_expert, const Tensor& input, std::span<const int32_t> rows, std::span<const int32_t> output_rows,
          Tensor& output) {
        apply_expert_recorded(backend_, layer_weights.experts.at(static_cast<size_t>(local_expert)), input, rows,
                              output_rows, output, tape.experts[static_cast<size_t>(local_expert)]);
      },
      &tape.dispatch);
  tape.input = tape.dispatch.input;
}

void ExpertParallelTrainableExperts::backward(int64_t layer, const ExpertLayerTape& tape, const Tensor& grad_slots,
                                              Tensor& grad_slot_inputs) {
  const auto& layer_weights = weights_.layers.at(static_cast<size_t>(layer));
  auto& layer_gradients = gradients_.layers.at(static_cast<size_t>(layer));
  dispatcher_.dispatch_backward(
      tape.dispatch, grad_slots, grad_slot_inputs,
      [&](int64_t local_expert, const Tensor& input, std::span<const int32_t>, std::span<const int32_t>,
          const Tensor& grad_output, Tensor& grad_input) {
        const auto index = static_cast<size_t>(local_expert);
        expert_backward(backend_, layer_weights.experts.at(index), layer_gradients.experts.at(index), input,
                        tape.experts.at(index), grad_output, grad_input);
      });
}

}  // namespace temoe
