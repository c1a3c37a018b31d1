#pragma once
// Pretraining the MoE transformer on token data: each step draws the global batch's sequences
// from the batch sampler (keyed by global sequence index, so the data do not depend on the world
// size), splits them over the data-parallel ranks, computes the gradient of mean next-token
// cross-entropy + load balancing (training_step.hpp), clips the global gradient norm and takes an
// AdamW step at the learning rate of a warm-up + cosine schedule. Every rank updates its own
// parameters with identical gradients, so replicated parameters stay identical everywhere.
#include <cstdint>
#include <filesystem>
#include <memory>

#include "optim/adamw.hpp"
#include "optim/learning_rate_schedule.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/data/batch_sampler.hpp"
#include "src/training/training_step.hpp"

namespace temoe {

struct PretrainingOptions {
  int64_t steps = 300;             // optimizer updates
  int64_t batch_size = 32;         // sequences per step over all ranks (a multiple of the world size)
  int64_t sequence_length = 64;    // T, tokens per sequence
  double learning_rate = 3e-3;     // peak, after warm-up
  double min_learning_rate = 3e-4; // reached by the cosine at the last step
  int64_t warmup_steps = 20;
  double weight_decay = 0.1;       // decoupled, on matrices only (not on norm weights)
  double beta1 = 0.9;
  double beta2 = 0.95;
  double epsilon = 1e-8;
  double gradient_clip = 1.0;      // max global L2 norm; 0 disables clipping
  double load_balancing = 0.01;    // coefficient of the Switch load-balancing loss
  double routing_locality = 0;     // coefficient of the routing-locality loss (language_model_loss.hpp); 0: off
  int64_t locality_window = 64;    // tokens per window of that loss; divides sequence_length
  uint64_t seed = 1;               // data order (the batch sampler's seed)

  // Throws naming the pretrain.<key> that is out of range.
  void validate(int world_size) const;
};

struct StepReport {
  int64_t step = 0;            // updates completed, this one included
  StepLosses losses;
  double learning_rate = 0;
  double gradient_norm = 0;    // before clipping
  bool skipped = false;        // non-finite gradient: the update was not applied
  double seconds = 0;          // wall time of this step on this rank
};

class Pretrainer {
 public:
  // `model`, `dataset` must outlive the trainer. `world_rank`/`world_size` place this rank's
  // sequences in each global batch.
  Pretrainer(TrainingModel& model, const TrainingCommunicators& communicators, const data::TokenDataset& dataset,
             const PretrainingOptions& options);

  StepReport step();
  int64_t step_count() const { return step_count_; }
  const PretrainingOptions& options() const { return options_; }

  // The run's whole state, independent of the layout that wrote it: every parameter of the full
  // model and its AdamW moments under the Hugging Face names (the experts gathered from the
  // expert-parallel group), the step and the data position. Collective (every rank calls it); the
  // result is complete on world rank 0 only, where it is meant to be committed. `config` is the
  // resolved configuration text stored with it.
  Checkpoint checkpoint(const std::string& config_text) const;
  // Continues from `checkpoint` (written by any world size and expert-parallel layout): every
  // rank takes its parameters and moments by name. Refuses (CheckpointError, incompatible) a
  // checkpoint of another architecture. With the same world size the continuation is bit for bit
  // the run that was not interrupted.
  void restore(const Checkpoint& checkpoint);
  ModelIdentity model_identity() const;

 private:
  TrainingModel& model_;
  TrainingCommunicators communicators_;
  PretrainingOptions options_;
  data::BatchSampler sampler_;
  LearningRateSchedule schedule_;
  ParameterSet decayed_, not_decayed_;  // matrices; norm weights
  std::unique_ptr<AdamW> decayed_optimizer_, not_decayed_optimizer_;
  // AdamW's moment tensors of every parameter, in model.parameters.all order (aliases).
  std::vector<Tensor> first_moments_, second_moments_;
  int64_t step_count_ = 0;
};

// Entropy (nats) of the data's unigram distribution: the loss of the best model that ignores
// context, the bar a language model must get well below.
double unigram_entropy(const data::TokenDataset& dataset);

// Writes the whole model (config.json + model.safetensors, F32, Hugging Face layout) to
// `directory` from world rank 0, after gathering the experts of its expert-parallel group. Every
// rank must call it (the gather is collective over each expert-parallel group).
void write_trained_model(const TrainingModel& model, const TrainingCommunicators& communicators,
                         const std::filesystem::path& directory);

}  // namespace temoe
