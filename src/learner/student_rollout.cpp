#include "src/learner/student_rollout.hpp"

#include "src/core/error.hpp"

namespace temoe {

std::vector<uint8_t> allowed_expert_flags(const LayerDecisions& decisions, int64_t num_experts) {
  const auto count = decisions.masks.size() / static_cast<size_t>(decisions.k_hat);
  std::vector<uint8_t> flags(count * static_cast<size_t>(num_experts), 0);
  for (size_t position = 0; position < count; ++position) {
    for (int64_t m = 0; m < decisions.k_hat; ++m) {
      const int32_t expert = decisions.masks[position * static_cast<size_t>(decisions.k_hat) + static_cast<size_t>(m)];
      flags[position * static_cast<size_t>(num_experts) + static_cast<size_t>(expert)] = 1;
    }
  }
  return flags;
}

Rollout run_rollout(MoeTransformer& model, std::span<const int32_t> tokens, int64_t batch, int64_t time,
                    MaskPolicy* policy, std::span<const int64_t> sequence_ids, int64_t step) {
  TEMOE_CHECK(static_cast<int64_t>(sequence_ids.size()) == batch,
              "rollout: " << sequence_ids.size() << " sequence ids for a batch of " << batch);
  const ModelConfig& config = model.config();
  Rollout rollout;
  ForwardState state = model.begin(tokens, batch, time);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    model.attention(layer, state);
    MoeInput input = model.moe_input(layer, state);
    RouterRecord record;
    if (policy) {
      // The controllers run on the host: on a device their inputs come over once per layer
      // ([N, D] and [N, E]), and the masks go back as N * E flags. On the CPU nothing is copied.
      Tensor hidden = to_host(input.normed), router_logits = to_host(input.router_logits);
      const LayerView view{layer, batch, time, &hidden, &router_logits, sequence_ids, step};
      rollout.decisions.push_back(policy->decide(view));
      const auto flags = allowed_expert_flags(rollout.decisions.back(), config.num_experts);
      model.moe(layer, state, input, &flags, &record);
      rollout.hidden.push_back(std::move(hidden));
      rollout.router_logits.push_back(std::move(router_logits));
    } else {
      // The teacher's hidden states and logits are read by no policy: they stay where they are.
      model.moe(layer, state, input, nullptr, &record);
      rollout.hidden.push_back(std::move(input.normed));
      rollout.router_logits.push_back(std::move(input.router_logits));
    }
    rollout.chosen_experts.push_back(std::move(record.chosen_experts));
  }
  rollout.logits = model.finish(state);
  return rollout;
}

}  // namespace temoe
