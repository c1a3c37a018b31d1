#pragma once
// The refusal of a checkpoint, with a reason a loader can act on: a damaged or missing file may be
// skipped for an older one (when the caller allows it), an incompatible one never is.
#include <string>

#include "src/core/error.hpp"

namespace temoe {

enum class CheckpointProblem {
  missing,       // the file (or the one `latest` names) does not exist
  damaged,       // unreadable: truncated, a checksum fails, a dataset or attribute is missing or malformed
  incompatible,  // readable but not for this run: format version, model identity, parameter names or shapes
};

const char* to_string(CheckpointProblem problem);

class CheckpointError : public Error {
 public:
  CheckpointError(CheckpointProblem problem, const std::string& message) : Error(message), problem_(problem) {}
  CheckpointProblem problem() const { return problem_; }

 private:
  CheckpointProblem problem_;
};

}  // namespace temoe
