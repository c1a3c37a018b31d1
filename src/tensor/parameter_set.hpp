#pragma once
// Named trainable tensors with their gradients: what optimizers update, what gradient all-reduce
// flattens, and what checkpoints store. Optimizers and checkpoints see only this, never a model.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

struct Parameter {
  std::string name;  // unique within the set, e.g. "layer3.termination.w1"
  Tensor value;
  Tensor gradient;   // same shape as value
};

class ParameterSet {
 public:
  // Adds a parameter (value and gradient zero-filled) and returns it. Names must be unique.
  Parameter& add(const std::string& name, const Shape& shape);

  std::vector<Parameter>& parameters() { return parameters_; }
  const std::vector<Parameter>& parameters() const { return parameters_; }
  Parameter& get(const std::string& name);
  const Parameter& get(const std::string& name) const;
  bool contains(const std::string& name) const;

  void zero_gradients();
  int64_t element_count() const;

  // All gradients, in parameter order, as one contiguous copy (for all-reduce) and back.
  std::vector<float> flatten_gradients() const;
  void unflatten_gradients(std::span<const float> flat);

 private:
  std::vector<Parameter> parameters_;
};

}  // namespace temoe
