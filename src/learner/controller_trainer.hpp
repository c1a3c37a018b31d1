#pragma once
// One training step of the option controllers: the teacher (plain top-k routing) and the student
// (routing inside the controllers' held masks) run on the same frozen model and the same tokens;
// the per-token reward compares them; the option-critic learner turns rewards into gradients;
// gradients are summed over all ranks, clipped, and applied with AdamW. Every rank calls step()
// with its own slice of the global batch. The tokens are the batch's own (teacher_forced), or the
// batch's first tokens as prompts followed by a continuation drawn from the student/teacher
// mixture, with importance weights on the losses (sampled; src/learner/sampled_rollout.hpp).
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "optim/adamw.hpp"
#include "parallel/communicator.hpp"
#include "src/data/batch_sampler.hpp"
#include "src/learner/controller_config.hpp"
#include "src/learner/distillation_reward.hpp"
#include "src/learner/option_controller.hpp"
#include "src/learner/option_critic_learner.hpp"
#include "src/learner/sampled_rollout.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe {

enum class RolloutMode { teacher_forced, sampled };

struct TrainerConfig {
  ControllerConfig controller;
  AdamWConfig optimizer;
  double clip_norm = 1.0;
  RewardKind reward = RewardKind::log_ratio;
  uint64_t seed = 1;
  RolloutMode rollout = RolloutMode::teacher_forced;
  SampledRolloutOptions sampled;  // prompt length and teacher share (rollout = sampled)
  // The expert-parallel layout the communication cost is priced on: owner rank of each expert
  // (empty: one rank holds every expert, nothing is remote) and this rank's place in its group.
  std::vector<int> expert_owners;
  int home_rank = 0;
  // Fault injection for tests: world rank `inject_nonfinite_rank` puts a NaN into its gradient at
  // `inject_nonfinite_count` steps from `inject_nonfinite_step` on (-1: never). temoe train sets it
  // from TEMOE_NONFINITE_INJECTION.
  int64_t inject_nonfinite_step = -1;
  int inject_nonfinite_rank = 0;
  int64_t inject_nonfinite_count = 1;
};

// Global figures of one step (summed over ranks).
struct StepMetrics {
  int64_t step = 0;
  int64_t tokens = 0;
  double reward = 0;       // mean reward per token
  double kl = 0;           // mean KL(teacher || student) per token
  double switch_rate = 0;  // over all (token, layer) pairs with t >= 1
  double teacher_switch_rate = 0;  // plain top-k routing on the same tokens
  double gradient_norm = 0;
  // Sampled rollouts: mean p_student / p_mix over the drawn tokens (empty when teacher-forced).
  std::optional<double> importance_weight_mean;
  std::vector<double> switch_rate_per_layer;
  std::vector<double> mean_option_duration_per_layer;
  std::vector<double> utilization_entropy_per_layer;
  std::vector<LayerLosses> losses;
  // A NaN or infinity in any rank's losses, rewards or gradients: the update was not applied (the
  // parameters and AdamW moments are those before the step), every rank agreeing.
  bool skipped_nonfinite = false;
};

// Per layer and token (layer-major, [layers * N]): cost_per_rank times the ranks other than
// `home_rank` that own experts of the held mask. Empty when the cost is 0 or nothing is remote.
std::vector<double> communication_costs(const Rollout& rollout, double cost_per_rank, std::span<const int> expert_owners,
                                        int home_rank);

class ControllerTrainer {
 public:
  ControllerTrainer(MoeTransformer& model, const TrainerConfig& config, Communicator& world);

  StepMetrics step(const data::SequenceBatch& batch, int64_t step);

  // Sums the gradients over `device_world` (an NCCL communicator over the same ranks as the world,
  // in the same order) through `device`'s memory instead of over the world communicator. The
  // figures (a few doubles per step) stay on the world communicator.
  void reduce_gradients_on(Communicator& device_world, Device device);

  ParameterSet& parameters() { return parameters_; }
  std::vector<OptionController>& controllers() { return controllers_; }
  AdamW& optimizer() { return *optimizer_; }
  const TrainerConfig& config() const { return config_; }

 private:
  MoeTransformer& model_;
  TrainerConfig config_;
  Communicator& world_;
  Communicator* gradient_world_ = nullptr;  // NCCL, when set
  Device gradient_device_ = Device::cpu;
  ParameterSet parameters_;
  std::vector<OptionController> controllers_;
  std::unique_ptr<AdamW> optimizer_;
};

// Controllers for every MoE layer of `model` in `parameters`.
std::vector<OptionController> make_controllers(ParameterSet& parameters, const ModelConfig& model,
                                               const ControllerConfig& config, uint64_t seed);

}  // namespace temoe
