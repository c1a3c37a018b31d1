#pragma once
// The experts of a layer, for training: a forward that keeps what the backward needs (an expert
// tape) and the backward, from the gradients of the (token, slot) outputs to the gradients of
// the inputs each slot's expert read, adding the expert weight gradients on the rank that holds
// the experts. Like ExpertExecutor, the model does not know where the experts live:
// LocalTrainableExperts runs them in-process, ExpertParallelTrainableExperts
// (expert_parallel_trainable_experts.hpp) through the token dispatcher's exchange and its reverse.
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/token_dispatcher.hpp"
#include "src/model/model_weights.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {

// One local expert's share of a layer call.
struct ExpertGroupTape {
  std::vector<int32_t> rows;     // rows of the layer tape's `input` it read
  std::vector<int32_t> outputs;  // rows of the output it wrote (slots locally, pairs under EP)
  Tensor gate;                   // [rows, F] gate projection before the SiLU
  Tensor up;                     // [rows, F] up projection
};

// What one layer's experts keep for the backward, on the rank that ran them.
struct ExpertLayerTape {
  Tensor input;                          // [R, D] the rows the local experts read
  std::vector<ExpertGroupTape> experts;  // per local expert
  DispatchTape dispatch;                 // expert parallelism only
};

class TrainableExperts {
 public:
  virtual ~TrainableExperts() = default;
  // As ExpertExecutor::run (hidden: [N, D]; experts: N * k global ids; slots: [N * k, D]), and
  // fills `tape`. The slots are bit-identical to the inference executor's.
  virtual void forward(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                       Tensor& slots, ExpertLayerTape& tape) = 0;
  // grad_slots: [N * k, D], the gradient of each slot's output; grad_slot_inputs: [N * k, D]
  // receives the gradient with respect to the hidden state each slot's expert read. The gradients
  // of this rank's expert weights are added to the gradient store given at construction.
  virtual void backward(int64_t layer, const ExpertLayerTape& tape, const Tensor& grad_slots,
                        Tensor& grad_slot_inputs) = 0;
};

// apply_expert (expert_executor.hpp) that also records the gate and up projections.
void apply_expert_recorded(Backend& backend, const ExpertWeights& expert, const Tensor& input,
                           std::span<const int32_t> rows, std::span<const int32_t> output_rows, Tensor& output,
                           ExpertGroupTape& tape);

// Backward of apply_expert_recorded: reads rows tape.outputs of grad_output, writes the input
// gradients to the same rows of grad_input, adds the weight gradients to `gradients`.
// input: [R, D] (what the forward read); grad_output, grad_input: [P, D].
void expert_backward(Backend& backend, const ExpertWeights& expert, ExpertWeights& gradients, const Tensor& input,
                     const ExpertGroupTape& tape, const Tensor& grad_output, Tensor& grad_input);

// All of a layer's experts in this process (the rank holds every expert the tokens chose).
class LocalTrainableExperts final : public TrainableExperts {
 public:
  // `gradients` is laid out as `weights` (see model_gradients.hpp).
  LocalTrainableExperts(Backend& backend, const ModelWeights& weights, ModelWeights& gradients)
      : backend_(backend), weights_(weights), gradients_(gradients) {}
  void forward(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
               ExpertLayerTape& tape) override;
  void backward(int64_t layer, const ExpertLayerTape& tape, const Tensor& grad_slots, Tensor& grad_slot_inputs) override;

 private:
  Backend& backend_;
  const ModelWeights& weights_;
  ModelWeights& gradients_;
};

}  // namespace temoe
