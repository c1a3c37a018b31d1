#pragma once
// What one training checkpoint holds (format: src/checkpoint/README.md). The tensors share storage
// with the live parameters they were captured from (Tensor copies are views), so building a
// Checkpoint for a save copies nothing; detached() makes a deep copy for a save that runs while
// training goes on.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "optim/adamw.hpp"
#include "src/tensor/parameter_set.hpp"

namespace temoe {

// Version 1: the layout of src/checkpoint/README.md. Readers refuse any other version.
inline constexpr int kCheckpointFormatVersion = 1;

// Which frozen model a run trains on. A checkpoint only loads into the same identity.
struct ModelIdentity {
  std::string architecture;  // e.g. "mixtral" or a fuller description; compared as text
  uint64_t fingerprint = 0;  // of the frozen weights' names and shapes (see fingerprint_weights)
  bool operator==(const ModelIdentity&) const = default;
};

// A stable 64-bit hash of (name, shape) pairs, in the given order.
uint64_t fingerprint_weights(const std::vector<std::pair<std::string, Shape>>& names_and_shapes);

// Per-rank state that a resume needs: the random generator's words and the data loader position.
struct RankState {
  std::vector<uint64_t> random_state;   // same length on every rank
  std::vector<int64_t> data_position;   // same length on every rank
  bool operator==(const RankState&) const = default;
};

// One named ParameterSet (e.g. "controller") and the state of its AdamW optimizer.
struct ParameterSetState {
  std::string name;
  std::vector<std::string> parameter_names;  // in the set's order
  std::vector<Tensor> values;                // one per parameter
  bool has_optimizer = false;
  int64_t optimizer_step = 0;                // AdamW::step_count
  std::vector<Tensor> first_moments;         // empty without optimizer, else one per parameter
  std::vector<Tensor> second_moments;
};

// The expert placement a run with expert parallelism trained with (ExpertPlacement's plain data,
// so that checkpoints need nothing of parallel/): owners[e] = the expert-parallel rank that held
// expert e, out of ep_size ranks. Applied again on resume (launch/resume_placement.hpp).
struct StoredPlacement {
  int ep_size = 0;
  std::vector<int32_t> owners;  // [E]
  bool operator==(const StoredPlacement&) const = default;
};

struct Checkpoint {
  int format_version = kCheckpointFormatVersion;
  std::string config;                 // the resolved configuration, as text
  ModelIdentity model;
  int64_t step = 0;                   // optimizer updates completed
  int64_t tokens = 0;                 // training tokens consumed
  std::vector<ParameterSetState> parameter_sets;
  std::vector<RankState> ranks;       // index = rank; size = the world size that wrote it (>= 1)
  std::string metrics = "{}";         // JSON: whatever the trainer needs to continue its metrics
  // Absent for runs without expert parallelism (ep_size 1) and in files written before placements
  // were recorded; both load as before.
  std::optional<StoredPlacement> expert_placement;
  std::filesystem::path source;       // set by the reader: the file it came from (for messages)

  int world_size() const { return static_cast<int>(ranks.size()); }
  const ParameterSetState& parameter_set(const std::string& name) const;  // throws naming the file
  // A deep copy: tensors no longer share storage with the live parameters.
  Checkpoint detached() const;
};

// Captures `parameters` (and the moments of `optimizer`, which must have been built on the same
// set; nullptr for none) without copying tensor data.
ParameterSetState capture_parameter_set(const std::string& name, const ParameterSet& parameters,
                                        const AdamW* optimizer);

// Copies the stored set `name` into `parameters` (and `optimizer`'s moments and step count, when
// given) after checking that the parameter names and shapes match; throws CheckpointError
// (incompatible) naming the file, the parameter and both shapes. Nothing is changed on refusal.
void restore_parameter_set(const Checkpoint& checkpoint, const std::string& name, ParameterSet& parameters,
                           AdamW* optimizer);

// Throws CheckpointError (incompatible) unless the checkpoint was written for `expected`.
void check_model_identity(const Checkpoint& checkpoint, const ModelIdentity& expected);

}  // namespace temoe
