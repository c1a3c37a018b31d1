#include "src/model/expert_parallel_experts.hpp"

#include "src/core/error.hpp"

namespace temoe {

ExpertParallelExperts::ExpertParallelExperts(Backend& backend, const ModelWeights& weights, TokenDispatcher& dispatcher)
    : backend_(backend), weights_(weights), dispatcher_(dispatcher) {
  const auto own = dispatcher.placement().experts_of(dispatcher.rank());
  TEMOE_CHECK(own == weights.local_experts.ids(), "rank " << dispatcher.rank() << ": the loaded experts "
                                                          << weights.local_experts.describe()
                                                          << " are not what the dispatcher's placement assigns to this rank");
}

namespace {

LocalExpertFunction layer_experts(Backend& backend, const LayerWeights& layer_weights, const ExpertActivation& activation,
                                  bool with_adapters) {
  return [&backend, &layer_weights, &activation, with_adapters](int64_t local_expert, const Tensor& input,
                                                                std::span<const int32_t> rows,
                                                                std::span<const int32_t> output_rows, Tensor& output) {
    apply_expert(backend, layer_weights.experts.at(static_cast<size_t>(local_expert)), input, rows, output_rows, output,
                 activation, with_adapters);
  };
}

HeldMasksView held_view(int64_t layer, const std::vector<uint8_t>* held_masks) {
  return {layer, held_masks ? std::span<const uint8_t>(*held_masks) : std::span<const uint8_t>()};
}

}  // namespace

void ExpertParallelExperts::run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                                Tensor& slots, const std::vector<uint8_t>* held_masks) {
  const HeldMasksView held = held_view(layer, held_masks);
  dispatcher_.dispatch(hidden, experts, top_k, slots, layer_experts(backend_, weights_.layers.at(static_cast<size_t>(layer)), weights_.expert_activation, adapters_enabled()),
                       nullptr, held_masks ? &held : nullptr);
}

bool ExpertParallelExperts::run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts,
                                        int64_t top_k, const std::vector<uint8_t>* held_masks, SlotRows& out) {
  const HeldMasksView held = held_view(layer, held_masks);
  dispatcher_.dispatch_to_rows(hidden, experts, top_k, out,
                               layer_experts(backend_, weights_.layers.at(static_cast<size_t>(layer)), weights_.expert_activation, adapters_enabled()),
                               held_masks ? &held : nullptr);
  return true;
}

}  // namespace temoe
