#pragma once
// AdamW (decoupled weight decay, Loshchilov & Hutter) over a ParameterSet, with bias correction,
// as torch.optim.AdamW computes it. The moments are exposed for checkpoints.
#include <cstdint>
#include <vector>

#include "src/tensor/parameter_set.hpp"

namespace temoe {

struct AdamWConfig {
  double learning_rate = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.01;
};

class AdamW {
 public:
  AdamW(ParameterSet& parameters, AdamWConfig config);

  // One update from the current gradients, at `learning_rate` (a schedule's value for this step).
  void step(double learning_rate);
  void step() { step(config_.learning_rate); }

  // Parameter `index` (in the set's order) moves at `scale` times the step's learning rate, its
  // weight decay included (a head that wants a smaller rate than the rest of its set).
  void set_learning_rate_scale(size_t index, double scale);
  double learning_rate_scale(size_t index) const { return learning_rate_scales_.at(index); }

  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t count) { step_count_ = count; }
  // First and second moments, one tensor per parameter in the set's order.
  std::vector<Tensor>& first_moments() { return first_moments_; }
  std::vector<Tensor>& second_moments() { return second_moments_; }
  const std::vector<Tensor>& first_moments() const { return first_moments_; }
  const std::vector<Tensor>& second_moments() const { return second_moments_; }
  const AdamWConfig& config() const { return config_; }

 private:
  ParameterSet& parameters_;
  AdamWConfig config_;
  int64_t step_count_ = 0;
  std::vector<Tensor> first_moments_;
  std::vector<Tensor> second_moments_;
  std::vector<double> learning_rate_scales_;  // one per parameter, 1 unless set
};

}  // namespace temoe
