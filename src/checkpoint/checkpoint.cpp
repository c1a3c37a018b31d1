#include "src/checkpoint/checkpoint.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "src/checkpoint/checkpoint_error.hpp"
#include "src/core/counter_random.hpp"

namespace temoe {

const char* to_string(CheckpointProblem problem) {
  switch (problem) {
    case CheckpointProblem::missing: return "missing";
    case CheckpointProblem::damaged: return "damaged";
    case CheckpointProblem::incompatible: return "incompatible";
  }
  return "unknown";
}

namespace {

std::string fingerprint_text(uint64_t fingerprint) {
  std::ostringstream text;
  text << "0x" << std::hex << std::setw(16) << std::setfill('0') << fingerprint;
  return text.str();
}

uint64_t hash_bytes(uint64_t state, const std::string& bytes) {
  // FNV-1a over the bytes, folded into the running state by the SplitMix64 finaliser.
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char byte : bytes) hash = (hash ^ byte) * 0x100000001b3ull;
  return mix64(state ^ hash);
}

}  // namespace

uint64_t fingerprint_weights(const std::vector<std::pair<std::string, Shape>>& names_and_shapes) {
  uint64_t state = mix64(names_and_shapes.size());
  for (const auto& [name, shape] : names_and_shapes) {
    state = hash_bytes(state, name);
    state = mix64(state ^ mix64(shape.size()));
    for (int64_t extent : shape) state = mix64(state ^ mix64(static_cast<uint64_t>(extent)));
  }
  return state;
}

const ParameterSetState& Checkpoint::parameter_set(const std::string& name) const {
  for (const auto& set : parameter_sets) {
    if (set.name == name) return set;
  }
  std::ostringstream present;
  for (const auto& set : parameter_sets) present << (present.tellp() > 0 ? ", " : "") << "'" << set.name << "'";
  throw CheckpointError(CheckpointProblem::incompatible,
                        source.string() + ": no parameter set '" + name + "' (the file holds: " +
                            (parameter_sets.empty() ? std::string("none") : present.str()) + ")");
}

Checkpoint Checkpoint::detached() const {
  Checkpoint copy = *this;
  for (auto& set : copy.parameter_sets) {
    for (auto& tensor : set.values) tensor = tensor.clone();
    for (auto& tensor : set.first_moments) tensor = tensor.clone();
    for (auto& tensor : set.second_moments) tensor = tensor.clone();
  }
  return copy;
}

ParameterSetState capture_parameter_set(const std::string& name, const ParameterSet& parameters,
                                        const AdamW* optimizer) {
  ParameterSetState state;
  state.name = name;
  for (const auto& parameter : parameters.parameters()) {
    state.parameter_names.push_back(parameter.name);
    state.values.push_back(parameter.value);
  }
  if (optimizer != nullptr) {
    TEMOE_CHECK(optimizer->first_moments().size() == parameters.parameters().size() &&
                    optimizer->second_moments().size() == parameters.parameters().size(),
                "capture_parameter_set('" << name << "'): the optimizer holds moments for "
                                          << optimizer->first_moments().size() << " parameters, the set has "
                                          << parameters.parameters().size());
    state.has_optimizer = true;
    state.optimizer_step = optimizer->step_count();
    state.first_moments = optimizer->first_moments();
    state.second_moments = optimizer->second_moments();
  }
  return state;
}

void restore_parameter_set(const Checkpoint& checkpoint, const std::string& name, ParameterSet& parameters,
                           AdamW* optimizer) {
  const ParameterSetState& stored = checkpoint.parameter_set(name);
  const std::string where = checkpoint.source.string() + ": parameter set '" + name + "'";
  auto refuse = [&](const std::string& message) {
    throw CheckpointError(CheckpointProblem::incompatible, where + ": " + message);
  };
  auto& live = parameters.parameters();
  if (stored.parameter_names.size() != live.size()) {
    refuse("holds " + std::to_string(stored.parameter_names.size()) + " parameters, this run has " +
           std::to_string(live.size()));
  }
  if (optimizer != nullptr && !stored.has_optimizer) refuse("has no optimizer state, this run expects AdamW moments");
  // Check everything first, so that a refusal leaves the live parameters untouched.
  std::vector<size_t> stored_index(live.size());
  for (size_t i = 0; i < live.size(); ++i) {
    const auto found = std::find(stored.parameter_names.begin(), stored.parameter_names.end(), live[i].name);
    if (found == stored.parameter_names.end()) refuse("has no parameter '" + live[i].name + "' that this run expects");
    stored_index[i] = static_cast<size_t>(found - stored.parameter_names.begin());
    const Shape& stored_shape = stored.values[stored_index[i]].shape();
    if (stored_shape != live[i].value.shape()) {
      refuse("parameter '" + live[i].name + "' has shape " + shape_string(stored_shape) + ", this run expects " +
             shape_string(live[i].value.shape()));
    }
  }
  if (optimizer != nullptr) {
    TEMOE_CHECK(optimizer->first_moments().size() == live.size(),
                "restore_parameter_set: the optimizer was not built on this parameter set");
  }
  for (size_t i = 0; i < live.size(); ++i) {
    const size_t j = stored_index[i];
    std::copy_n(stored.values[j].data(), stored.values[j].numel(), live[i].value.data());
    if (optimizer != nullptr) {
      std::copy_n(stored.first_moments[j].data(), stored.first_moments[j].numel(), optimizer->first_moments()[i].data());
      std::copy_n(stored.second_moments[j].data(), stored.second_moments[j].numel(),
                  optimizer->second_moments()[i].data());
    }
  }
  if (optimizer != nullptr) optimizer->set_step_count(stored.optimizer_step);
}

void check_model_identity(const Checkpoint& checkpoint, const ModelIdentity& expected) {
  if (checkpoint.model == expected) return;
  throw CheckpointError(CheckpointProblem::incompatible,
                        checkpoint.source.string() + ": checkpoint of another model: it was written for '" +
                            checkpoint.model.architecture + "' with weights fingerprint " +
                            fingerprint_text(checkpoint.model.fingerprint) + ", this run has '" + expected.architecture +
                            "' with fingerprint " + fingerprint_text(expected.fingerprint));
}

}  // namespace temoe
