#include "src/learner/sampled_rollout.hpp"

#include <algorithm>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/learner/mixture_sampling.hpp"
#include "src/learner/random_streams.hpp"

namespace temoe {

namespace {

// Copies a chunk's rows (b, s) of `width` values ([B, S, width]) to rows (b, first + s) of a
// whole-sequence array ([B, T, width]).
template <typename Value>
void place_rows(const Value* chunk, int64_t width, int64_t batch, int64_t chunk_time, int64_t first, int64_t time,
                Value* whole) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < chunk_time; ++s) {
      const Value* from = chunk + (b * chunk_time + s) * width;
      std::copy(from, from + width, whole + (b * time + first + s) * width);
    }
  }
}

// One model generating chunk by chunk with its own KV cache, recording what a whole-sequence
// rollout would hold. With a policy it is the student (routing inside the held masks, which carry
// from chunk to chunk); without, the teacher, of which only logits and experts are kept.
class ChunkedRollout {
 public:
  ChunkedRollout(MoeTransformer& model, int64_t batch, int64_t time, ControllerPolicy* policy,
                 std::span<const int64_t> sequence_ids, int64_t step)
      : model_(model),
        config_(model.config()),
        batch_(batch),
        time_(time),
        cache_(model.config(), batch, time, model.backend_.device()),
        policy_(policy),
        held_(static_cast<size_t>(model.config().num_layers)),
        sequence_ids_(sequence_ids),
        step_(step) {
    const int64_t count = batch * time, layers = config_.num_layers;
    rollout_.logits = Tensor({batch, time, config_.vocab_size}, model.backend_.device());
    rollout_.chosen_experts.assign(static_cast<size_t>(layers), std::vector<int32_t>(static_cast<size_t>(count * config_.top_k)));
    if (!policy_) return;
    const int64_t k_hat = policy_->k_hat();
    for (int64_t layer = 0; layer < layers; ++layer) {
      rollout_.hidden.emplace_back(Shape{count, config_.hidden_size});
      rollout_.router_logits.emplace_back(Shape{count, config_.num_experts});
      LayerDecisions decisions;
      decisions.k_hat = k_hat;
      decisions.masks.resize(static_cast<size_t>(count * k_hat));
      decisions.previous_masks.resize(decisions.masks.size());
      decisions.selected_tuples.resize(decisions.masks.size());
      decisions.terminated.resize(static_cast<size_t>(count));
      decisions.switched.resize(static_cast<size_t>(count));
      rollout_.decisions.push_back(std::move(decisions));
    }
  }

  // Positions [cache length, + chunk_time) of every sequence; tokens: [B, chunk_time].
  void run(std::span<const int32_t> tokens, int64_t chunk_time) {
    ForwardState state = model_.begin(cache_, tokens, chunk_time);
    const int64_t first = state.first_position, layers = config_.num_layers;
    for (int64_t layer = 0; layer < layers; ++layer) {
      const auto l = static_cast<size_t>(layer);
      model_.attention(layer, state);
      const MoeInput input = model_.moe_input(layer, state);
      RouterRecord record;
      if (policy_) {
        // The controllers run on the host (student_rollout.hpp): their inputs come over per chunk.
        const Tensor hidden = to_host(input.normed), router_logits = to_host(input.router_logits);
        const LayerView view{layer, batch_, chunk_time, &hidden, &router_logits, sequence_ids_, step_};
        const LayerDecisions decisions = policy_->decide_from(view, first, held_[l]);
        const auto flags = allowed_expert_flags(decisions, config_.num_experts);
        model_.moe(layer, state, input, &flags, &record);
        place_decisions(decisions, chunk_time, first, rollout_.decisions[l]);
        place_rows(hidden.data(), config_.hidden_size, batch_, chunk_time, first, time_, rollout_.hidden[l].data());
        place_rows(router_logits.data(), config_.num_experts, batch_, chunk_time, first, time_,
                   rollout_.router_logits[l].data());
      } else {
        model_.moe(layer, state, input, nullptr, &record);
      }
      place_rows(record.chosen_experts.data(), config_.top_k, batch_, chunk_time, first, time_,
                 rollout_.chosen_experts[l].data());
    }
    // The chunk's logits go to their rows of the whole rollout where they are (the reward reads
    // them there); only the chunk's last position comes to the host, for the next draw.
    const Tensor logits = model_.finish(state).reshaped({batch_ * chunk_time, config_.vocab_size});
    std::vector<int32_t> rows(static_cast<size_t>(batch_ * chunk_time)), last(static_cast<size_t>(batch_));
    for (int64_t b = 0; b < batch_; ++b) {
      for (int64_t s = 0; s < chunk_time; ++s) rows[static_cast<size_t>(b * chunk_time + s)] = static_cast<int32_t>(b * time_ + first + s);
      last[static_cast<size_t>(b)] = static_cast<int32_t>(b * chunk_time + chunk_time - 1);
    }
    Tensor whole = rollout_.logits.reshaped({batch_ * time_, config_.vocab_size});
    model_.backend_.scatter_rows(logits, rows, whole);
    Tensor last_logits({batch_, config_.vocab_size}, logits.device());
    model_.backend_.gather_rows(logits, last, last_logits);
    last_logits_ = to_host(last_logits);
    last_position_ = first + chunk_time - 1;
  }

  // The logits [V] at position t of sequence b: the last position of the latest chunk.
  std::span<const float> logits_at(int64_t b, int64_t t) const {
    TEMOE_CHECK(t == last_position_, "sampled rollout: logits of position " << t << " asked for, the latest chunk ends at "
                                                                             << last_position_);
    return {last_logits_.data() + b * config_.vocab_size, static_cast<size_t>(config_.vocab_size)};
  }

  Rollout take() { return std::move(rollout_); }

 private:
  void place_decisions(const LayerDecisions& chunk, int64_t chunk_time, int64_t first, LayerDecisions& whole) const {
    const int64_t k_hat = chunk.k_hat;
    place_rows(chunk.masks.data(), k_hat, batch_, chunk_time, first, time_, whole.masks.data());
    place_rows(chunk.previous_masks.data(), k_hat, batch_, chunk_time, first, time_, whole.previous_masks.data());
    place_rows(chunk.selected_tuples.data(), k_hat, batch_, chunk_time, first, time_, whole.selected_tuples.data());
    place_rows(chunk.terminated.data(), 1, batch_, chunk_time, first, time_, whole.terminated.data());
    place_rows(chunk.switched.data(), 1, batch_, chunk_time, first, time_, whole.switched.data());
  }

  MoeTransformer& model_;
  const ModelConfig& config_;
  int64_t batch_;
  int64_t time_;
  KeyValueCache cache_;
  ControllerPolicy* policy_;
  std::vector<HeldMasks> held_;  // per layer
  std::span<const int64_t> sequence_ids_;
  int64_t step_;
  Rollout rollout_;
  Tensor last_logits_;  // [B, V] host: the latest chunk's last position
  int64_t last_position_ = -1;
};

}  // namespace

SampledRollout run_sampled_rollout(MoeTransformer& model, ControllerPolicy& policy, const data::SequenceBatch& batch,
                                   const SampledRolloutOptions& options, uint64_t seed, int64_t step) {
  const int64_t sequences = batch.batch, time = batch.time, prompt = options.prompt_length;
  const auto count = static_cast<size_t>(sequences * time);
  TEMOE_CHECK(prompt >= 1 && prompt <= time,
              "sampled rollout: prompt length " << prompt << " outside [1, " << time << "] (the sequence length)");
  TEMOE_CHECK(options.teacher_mix >= 0 && options.teacher_mix < 1,
              "sampled rollout: teacher share " << options.teacher_mix << " outside [0, 1)");
  TEMOE_CHECK(batch.tokens.size() == count && batch.targets.size() == count &&
                  static_cast<int64_t>(batch.global_index.size()) == sequences,
              "sampled rollout: " << batch.tokens.size() << " tokens, " << batch.targets.size() << " targets and "
                                  << batch.global_index.size() << " sequence ids for " << sequences << " x " << time);
  const std::span<const int64_t> ids(batch.global_index);
  SampledRollout out;
  out.tokens = batch.tokens;
  out.targets = batch.targets;
  out.generated.assign(count, 0);
  out.importance_weights.assign(count, 1.0);

  ChunkedRollout student(model, sequences, time, &policy, ids, step);
  ChunkedRollout teacher(model, sequences, time, nullptr, ids, step);
  std::vector<int32_t> chunk(static_cast<size_t>(sequences * prompt));
  for (int64_t b = 0; b < sequences; ++b) {
    std::copy_n(batch.tokens.begin() + b * time, prompt, chunk.begin() + b * prompt);
  }
  // Students before teachers, in every chunk: with expert parallelism each model() call is a
  // collective exchange, and all ranks of the group must make them in the same order.
  student.run(chunk, prompt);
  teacher.run(chunk, prompt);
  chunk.resize(static_cast<size_t>(sequences));
  for (int64_t t = prompt - 1; t < time; ++t) {
    for (int64_t b = 0; b < sequences; ++b) {
      const auto position = static_cast<size_t>(b * time + t);
      CounterRandom random(seed, {static_cast<uint64_t>(step), static_cast<uint64_t>(ids[static_cast<size_t>(b)]), kNoLayer,
                                  static_cast<uint64_t>(t), stream_key(RandomStream::sampled_token)});
      const MixtureDraw draw =
          draw_from_mixture(student.logits_at(b, t), teacher.logits_at(b, t), options.teacher_mix, random.uniform());
      out.targets[position] = draw.token;
      out.generated[position] = 1;
      out.importance_weights[position] = draw.importance_weight;
      if (t + 1 < time) out.tokens[position + 1] = draw.token;
      chunk[static_cast<size_t>(b)] = draw.token;
    }
    if (t + 1 < time) {
      student.run(chunk, 1);
      teacher.run(chunk, 1);
    }
  }
  out.student = student.take();
  out.teacher = teacher.take();
  return out;
}

}  // namespace temoe
