#pragma once
// A run directory's checkpoints: ckpt-<step>.h5 files and `latest`, a small text file naming the
// newest committed one. A commit writes the checkpoint under a temporary name, fsyncs it, renames
// it into place, fsyncs the directory, then replaces `latest` the same way; a crash at any instant
// leaves the previous `latest` and its file intact. Only one process per run directory (rank 0)
// writes; any process may load.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "src/checkpoint/checkpoint.hpp"
#include "src/checkpoint/checkpoint_error.hpp"

namespace temoe {

std::string checkpoint_file_name(int64_t step);  // "ckpt-<step>.h5"

class CheckpointDirectory {
 public:
  // Creates the directory if needed and removes temporaries that an interrupted commit left.
  // keep_last: committed checkpoints kept after each commit (0 keeps all); the one `latest` names
  // is never deleted.
  CheckpointDirectory(std::filesystem::path run_directory, int keep_last);

  // Commits ckpt-<checkpoint.step>.h5 atomically, points `latest` at it, deletes older checkpoints
  // beyond keep_last, and returns the new file's path. Files of a later step than this one (left by
  // a timeline abandoned when a run resumed from an older checkpoint) are neither counted nor
  // deleted.
  std::filesystem::path commit(const Checkpoint& checkpoint);

  const std::filesystem::path& path() const { return directory_; }
  int keep_last() const { return keep_last_; }

 private:
  std::filesystem::path directory_;
  int keep_last_;
};

// The committed checkpoints of a run directory, oldest step first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_directory);

// The file that `latest` names (which may not exist), or nullopt when there is no `latest`.
// Throws CheckpointError (damaged) when `latest` does not name a ckpt-<step>.h5 file.
std::optional<std::filesystem::path> read_latest_pointer(const std::filesystem::path& run_directory);

struct LoadOptions {
  // Refuse checkpoints of another model (CheckpointError, incompatible). Unchecked when empty
  // (architecture "" and fingerprint 0).
  ModelIdentity expected_model;
  // When the latest checkpoint is damaged or missing, load the newest older one that verifies
  // instead of stopping, after a loud warning on `warnings` naming the file skipped and why.
  bool fall_back_to_older = false;
  std::ostream* warnings = nullptr;  // default std::cerr
};

struct LoadedCheckpoint {
  Checkpoint checkpoint;
  std::filesystem::path file;
  std::vector<std::string> skipped;  // one message per newer checkpoint refused before `file`
};

// Loads and verifies the checkpoint that `latest` names (or, with no `latest`, the newest
// ckpt-<step>.h5). Returns nullopt when the directory holds no checkpoint at all. Throws
// CheckpointError when the chosen checkpoint is refused and no fallback is allowed or possible.
std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::filesystem::path& run_directory,
                                                       const LoadOptions& options);

}  // namespace temoe
