#include "src/checkpoint/checkpoint_directory.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "src/checkpoint/checkpoint_file.hpp"
#include "src/io/atomic_file.hpp"
#include "src/io/run_directory_lock.hpp"

namespace temoe {

namespace {

namespace fs = std::filesystem;

constexpr const char* kLatestName = "latest";

// The step of a "ckpt-<step>.h5" name, or -1 for any other name.
int64_t checkpoint_step(const std::string& name) {
  constexpr std::string_view prefix = "ckpt-", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix)) return -1;
  const std::string_view digits(name.data() + prefix.size(), name.size() - prefix.size() - suffix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  int64_t step = -1;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  return error == std::errc() && end == digits.data() + digits.size() ? step : -1;
}

// Temporaries of an interrupted commit: ".ckpt-<step>.h5.tmp-<host>-<pid>" and ".latest.tmp-<host>-<pid>".
// Removing them is safe because the run directory's one writer holds its lock (run_directory_lock.hpp).
bool is_temporary(const std::string& name) {
  return (name.starts_with(".ckpt-") || name.starts_with(std::string(".") + kLatestName)) &&
         name.find(".tmp-") != std::string::npos;
}

std::ostream& warning_stream(const LoadOptions& options) { return options.warnings != nullptr ? *options.warnings : std::cerr; }

bool identity_given(const ModelIdentity& identity) { return !identity.architecture.empty() || identity.fingerprint != 0; }

}  // namespace

std::string checkpoint_file_name(int64_t step) { return "ckpt-" + std::to_string(step) + ".h5"; }

std::vector<fs::path> list_checkpoints(const fs::path& run_directory) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(run_directory, error)) {
    const int64_t step = checkpoint_step(entry.path().filename().string());
    if (step >= 0) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

std::optional<fs::path> read_latest_pointer(const fs::path& run_directory) {
  const fs::path pointer = run_directory / kLatestName;
  std::ifstream stream(pointer);
  if (!stream) {
    if (!fs::exists(pointer)) return std::nullopt;
    throw CheckpointError(CheckpointProblem::damaged, pointer.string() + ": cannot read: " + std::strerror(errno));
  }
  std::string name;
  std::getline(stream, name);
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
  if (checkpoint_step(name) < 0) {
    throw CheckpointError(CheckpointProblem::damaged, pointer.string() + ": names '" + name.substr(0, 80) +
                                                          "', expected a file name of the form ckpt-<step>.h5");
  }
  return run_directory / name;
}

CheckpointDirectory::CheckpointDirectory(fs::path run_directory, int keep_last)
    : directory_(std::move(run_directory)), keep_last_(keep_last) {
  TEMOE_CHECK(keep_last_ >= 0, "checkpoint directory " << directory_.string() << ": keep_last " << keep_last_
                                                       << " must be >= 0 (0 keeps every checkpoint)");
  std::error_code error;
  fs::create_directories(directory_, error);
  if (error) TEMOE_FAIL(directory_.string() << ": cannot create the run directory: " << error.message());
  for (const auto& entry : fs::directory_iterator(directory_)) {
    if (is_temporary(entry.path().filename().string())) fs::remove(entry.path(), error);
  }
}

fs::path CheckpointDirectory::commit(const Checkpoint& checkpoint) {
  const std::string name = checkpoint_file_name(checkpoint.step);
  const fs::path target = directory_ / name;
  const fs::path temporary = directory_ / ("." + name + ".tmp-" + temporary_suffix());
  try {
    write_checkpoint_file(temporary, checkpoint);  // ends with fsync of the file
    fs::rename(temporary, target);
    fsync_directory(directory_);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  write_file_atomically(directory_ / kLatestName, [&](std::ostream& stream) { stream << name << "\n"; });

  if (keep_last_ > 0) {
    std::vector<fs::path> older;
    for (const auto& path : list_checkpoints(directory_)) {
      if (checkpoint_step(path.filename().string()) <= checkpoint.step && path.filename() != name) older.push_back(path);
    }
    // `older` is sorted by step; the new checkpoint counts as one of the keep_last.
    const size_t keep_older = static_cast<size_t>(keep_last_ - 1);
    const size_t remove_count = older.size() > keep_older ? older.size() - keep_older : 0;
    for (size_t i = 0; i < remove_count; ++i) {
      std::error_code ignored;
      fs::remove(older[i], ignored);
    }
  }
  return target;
}

std::optional<LoadedCheckpoint> load_latest_checkpoint(const fs::path& run_directory, const LoadOptions& options) {
  std::ostream& warnings = warning_stream(options);
  LoadedCheckpoint loaded;
  std::vector<fs::path> candidates;  // newest first
  std::optional<fs::path> latest;
  try {
    latest = read_latest_pointer(run_directory);
  } catch (const CheckpointError& error) {
    if (!options.fall_back_to_older) throw;
    warnings << "temoe: WARNING: " << error.what() << "\ntemoe: WARNING: ignoring it and looking for the newest "
             << "checkpoint that verifies\n";
    loaded.skipped.push_back(error.what());
  }
  auto all = list_checkpoints(run_directory);
  std::reverse(all.begin(), all.end());
  if (latest) {
    candidates.push_back(*latest);
    const int64_t latest_step = checkpoint_step(latest->filename().string());
    for (const auto& path : all) {
      if (checkpoint_step(path.filename().string()) < latest_step) candidates.push_back(path);
    }
  } else {
    if (all.empty()) return std::nullopt;
    if (loaded.skipped.empty()) {
      warnings << "temoe: note: " << (run_directory / kLatestName).string() << " does not exist; using the newest "
               << "checkpoint, " << all.front().string() << "\n";
    }
    candidates = all;
  }

  for (size_t i = 0; i < candidates.size(); ++i) {
    const fs::path& file = candidates[i];
    try {
      Checkpoint checkpoint;
      try {
        checkpoint = read_checkpoint_file(file);
      } catch (const CheckpointError& error) {
        if (i == 0 && latest && error.problem() == CheckpointProblem::missing) {
          throw CheckpointError(CheckpointProblem::missing, (run_directory / kLatestName).string() + " names " +
                                                                file.filename().string() + ", but " + file.string() +
                                                                " does not exist");
        }
        throw;
      }
      if (identity_given(options.expected_model)) check_model_identity(checkpoint, options.expected_model);
      if (!loaded.skipped.empty()) {
        warnings << "temoe: WARNING: resuming from the OLDER checkpoint " << file.string() << " (step " << checkpoint.step
                 << ") because " << loaded.skipped.size() << " newer one(s) could not be used (see above)\n";
      }
      loaded.checkpoint = std::move(checkpoint);
      loaded.file = file;
      return loaded;
    } catch (const CheckpointError& error) {
      if (error.problem() == CheckpointProblem::incompatible) throw;
      if (!options.fall_back_to_older) {
        throw CheckpointError(error.problem(), std::string(error.what()) +
                                                   " (not falling back to an older checkpoint: that must be asked "
                                                   "for)");
      }
      warnings << "temoe: WARNING: checkpoint " << file.string() << " is " << to_string(error.problem())
               << " and is skipped: " << error.what() << "\n";
      loaded.skipped.push_back(error.what());
    }
  }
  std::ostringstream reasons;
  for (const auto& message : loaded.skipped) reasons << "\n  " << message;
  throw CheckpointError(CheckpointProblem::damaged,
                        run_directory.string() + ": no usable checkpoint; refused:" + reasons.str());
}

}  // namespace temoe
