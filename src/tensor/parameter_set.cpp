#include "src/tensor/parameter_set.hpp"

#include <algorithm>

#include "src/core/error.hpp"

namespace temoe {

Parameter& ParameterSet::add(const std::string& name, const Shape& shape) {
  TEMOE_CHECK(!contains(name), "parameter '" << name << "' is defined twice");
  parameters_.push_back({name, Tensor::zeros(shape), Tensor::zeros(shape)});
  return parameters_.back();
}

Parameter& ParameterSet::get(const std::string& name) {
  for (auto& parameter : parameters_) {
    if (parameter.name == name) return parameter;
  }
  TEMOE_FAIL("no parameter named '" << name << "'");
}

const Parameter& ParameterSet::get(const std::string& name) const { return const_cast<ParameterSet*>(this)->get(name); }

bool ParameterSet::contains(const std::string& name) const {
  return std::any_of(parameters_.begin(), parameters_.end(), [&](const Parameter& p) { return p.name == name; });
}

void ParameterSet::zero_gradients() {
  for (auto& parameter : parameters_) parameter.gradient.fill(0.0f);
}

int64_t ParameterSet::element_count() const {
  int64_t count = 0;
  for (const auto& parameter : parameters_) count += parameter.value.numel();
  return count;
}

std::vector<float> ParameterSet::flatten_gradients() const {
  std::vector<float> flat;
  flat.reserve(static_cast<size_t>(element_count()));
  for (const auto& parameter : parameters_) {
    flat.insert(flat.end(), parameter.gradient.data(), parameter.gradient.data() + parameter.gradient.numel());
  }
  return flat;
}

void ParameterSet::unflatten_gradients(std::span<const float> flat) {
  TEMOE_CHECK(static_cast<int64_t>(flat.size()) == element_count(),
              "unflatten_gradients: " << flat.size() << " values for " << element_count() << " parameters");
  size_t offset = 0;
  for (auto& parameter : parameters_) {
    std::copy(flat.begin() + static_cast<std::ptrdiff_t>(offset),
              flat.begin() + static_cast<std::ptrdiff_t>(offset + static_cast<size_t>(parameter.gradient.numel())),
              parameter.gradient.data());
    offset += static_cast<size_t>(parameter.gradient.numel());
  }
}

}  // namespace temoe
