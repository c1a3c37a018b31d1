#pragma once
// Runs the experts a layer's tokens were routed to. The model does not know where experts live:
// LocalExperts runs them in-process; the expert-parallel dispatcher (parallel/) sends tokens to
// the ranks that own them. Both fill one output row per (token, slot), so the combine that follows
// sums in the same order however the tokens were grouped.
#include <cstdint>
#include <span>
#include <vector>

#include "src/model/model_weights.hpp"
#include "src/tensor/backend.hpp"
#include "src/tensor/slot_rows.hpp"

namespace temoe {

class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;
  // Like run(), but leaves the outputs where they landed instead of copying them into slot order,
  // which saves a pass over all of them where an exchange receives them grouped by source rank.
  // Returns false where the executor has no such path (the caller then uses run()).
  virtual bool run_to_rows(int64_t /*layer*/, const Tensor& /*hidden*/, std::span<const int32_t> /*experts*/,
                           int64_t /*top_k*/, const std::vector<uint8_t>* /*held_masks*/, SlotRows& /*out*/) {
    return false;
  }
  // hidden: [N, D]; experts: N * k global expert ids (token-major); slots: [N * k, D] output.
  // held_masks: the N * E flags of the masks the tokens hold (null without controllers); the
  // routing lies inside them. Executors that exchange tokens may plan with them; results are the
  // same either way.
  virtual void run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
                   const std::vector<uint8_t>* held_masks) = 0;

  // Whether the experts' LoRA adapters (where loaded) take part: the student runs with them, the
  // frozen teacher without. Every rank of an expert-parallel group sets it alike, in step.
  void set_adapters_enabled(bool enabled) { adapters_enabled_ = enabled; }
  bool adapters_enabled() const { return adapters_enabled_; }

 private:
  bool adapters_enabled_ = true;
};

// Applies one expert's SwiGLU FFN (with its biases and activation, gpt-oss's when `activation`
// says so) to the rows of `hidden` listed in `rows` and writes the results to `slots` at
// `slot_rows`. hidden: [N, D]; slots: [N * k, D].
// with_adapters: add the FFN's LoRA adapters (where defined).
void apply_expert(Backend& backend, const ExpertWeights& expert, const Tensor& hidden, std::span<const int32_t> rows,
                  std::span<const int32_t> slot_rows, Tensor& slots, const ExpertActivation& activation = {},
                  bool with_adapters = false);
// The same FFN on every row of `hidden` ([N, D]; out: [N, D]): a shared expert or a dense MLP.
void apply_ffn(Backend& backend, const ExpertWeights& ffn, const Tensor& hidden, Tensor& out,
               const ExpertActivation& activation = {}, bool with_adapters = false);

class LocalExperts final : public ExpertExecutor {
 public:
  LocalExperts(Backend& backend, const ModelWeights& weights) : backend_(backend), weights_(weights) {}
  void run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
           const std::vector<uint8_t>* held_masks) override;

 private:
  Backend& backend_;
  const ModelWeights& weights_;
};

}  // namespace temoe
