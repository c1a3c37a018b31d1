// `temoe train` on bad checkpoints, run directories, configs and data, table-driven: every case must
// end the program with exit code 1 (not a signal, not a hang), with a message that names the file,
// key or value at fault, and must leave the run directory exactly as it was (byte for byte; a run
// directory the job created is removed again). Each case prints one row of the table
// "[ bad input ] kind | case | message" that the note quotes; the forward's model and token
// cases are in tests/unit/bad_input_test.cpp.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "src/checkpoint/checkpoint_file.hpp"
#include "tests/e2e/temoe_commands.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::kBinary;
using testing::kMpirun;
using testing::run_shell_command;
using testing::shell_quote;

struct BadCase {
  const char* kind;  // checkpoint, run directory, config, data
  const char* name;
  std::function<void(const fs::path& run)> breaks;  // applied to a copy of a good run directory
  std::string options;                             // on top of the common ones
  std::vector<std::string> expected;               // substrings of the message
  bool fresh_run_directory = false;                // start from no run directory at all
  int ranks = 1;
};

// Every file under `directory` with its bytes (the lock file's text excepted: it records holders).
std::map<std::string, std::string> snapshot(const fs::path& directory) {
  std::map<std::string, std::string> files;
  if (!fs::exists(directory)) return files;
  if (!fs::is_directory(directory)) {
    std::ifstream stream(directory, std::ios::binary);
    files["."] = std::string(std::istreambuf_iterator<char>(stream), {});
    return files;
  }
  for (const auto& entry : fs::recursive_directory_iterator(directory)) {
    if (!entry.is_regular_file() || entry.path().filename() == ".lock") continue;
    std::ifstream stream(entry.path(), std::ios::binary);
    files[fs::relative(entry.path(), directory).string()] = std::string(std::istreambuf_iterator<char>(stream), {});
  }
  return files;
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }

void poison_first_parameter(const fs::path& file) {
  const Checkpoint checkpoint = read_checkpoint_file(file);
  const ParameterSetState& set = checkpoint.parameter_sets.at(0);
  const std::string dataset = "/parameter_sets/" + set.name + "/" + set.parameter_names.at(0) + "/value";
  std::vector<float> values(set.values[0].data(), set.values[0].data() + set.values[0].numel());
  values.at(0) = std::numeric_limits<float>::quiet_NaN();
  const hid_t handle = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const hid_t data = H5Dopen2(handle, dataset.c_str(), H5P_DEFAULT);
  H5Dwrite(data, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Dclose(data);
  H5Fclose(handle);
  reseal_checkpoint_file(file);
}

class BadRunInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = fs::temp_directory_path() / ("temoe-e2e-bad-run-" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    testing::make_training_files(work_, 40);
    for (const std::string& command :
         {kBinary + " init-model --arch mixtral --preset tiny --seed 4 --out " + shell_quote(work_ / "other-model"),
          kBinary + " make-data --out " + shell_quote(work_ / "long.h5") + " --seed 1 --data.documents=8 --data.document_length=6000",
          train_command(work_ / "good", 1, "--train.steps=2")}) {
      const auto result = run_shell_command(command, std::chrono::seconds(120));
      ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(work_); }

  // The common options, each left out when the case gives its own.
  static std::string train_command(const fs::path& run, int ranks, const std::string& extra) {
    std::string program = kBinary + " train --run-dir " + shell_quote(run);
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"--model", " " + shell_quote(work_ / "model")},
             {"--data.path", "=" + shell_quote(work_ / "data.h5")},
             {"--controller.k_hat", "=4"},
             {"--train.sequence_length", "=32"},
             {"--train.batch_size", "=4"},
             {"--train.log_every", "=1000"}}) {
      if (extra.find(key) == std::string::npos) program += " " + key + value;
    }
    program += " " + extra;
    return ranks == 1 ? program : kMpirun + " -np " + std::to_string(ranks) + " " + program;
  }

  static void check(const BadCase& bad) {
    const fs::path run = work_ / (std::string("case-") + std::to_string(++cases_));
    if (!bad.fresh_run_directory) fs::copy(work_ / "good", run, fs::copy_options::recursive);
    if (bad.breaks) bad.breaks(run);
    const auto before = snapshot(run);
    const bool existed = fs::exists(run);
    const CommandResult result = run_shell_command(train_command(run, bad.ranks, bad.options), std::chrono::seconds(120));
    SCOPED_TRACE(std::string(bad.kind) + ": " + bad.name);
    EXPECT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 1) << result.output;  // not a signal (128 + n), not a crash
    for (const std::string& expected : bad.expected) {
      EXPECT_NE(result.output.find(expected), std::string::npos) << "expected '" << expected << "' in:\n" << result.output;
    }
    EXPECT_EQ(fs::exists(run), existed) << "the run directory was created or removed";
    EXPECT_EQ(snapshot(run), before) << "the run directory changed";
    // The row of the table: the first line that says what is wrong.
    std::string message = result.output.substr(0, result.output.find('\n'));
    const auto error = result.output.find("error on rank");
    if (error != std::string::npos) message = result.output.substr(error, result.output.find('\n', error) - error);
    std::printf("[ bad input ] %s | %s | %s\n", bad.kind, bad.name, message.substr(0, 240).c_str());
  }

  static inline fs::path work_;
  static inline int cases_ = 0;
};

TEST_F(BadRunInput, CheckpointsAreRefusedNamingTheFile) {
  const std::vector<BadCase> cases = {
      {"checkpoint", "truncated to half its size",
       [](const fs::path& run) { fs::resize_file(run / "ckpt-2.h5", fs::file_size(run / "ckpt-2.h5") / 2); },
       "--train.steps=4", {"ckpt-2.h5", "truncated"}},
      {"checkpoint", "one byte flipped in the middle",
       [](const fs::path& run) {
         std::fstream file(run / "ckpt-2.h5", std::ios::in | std::ios::out | std::ios::binary);
         file.seekg(static_cast<std::streamoff>(fs::file_size(run / "ckpt-2.h5") / 2));
         char byte = 0;
         file.read(&byte, 1);
         file.seekp(static_cast<std::streamoff>(fs::file_size(run / "ckpt-2.h5") / 2));
         byte = static_cast<char>(byte ^ 0x40);
         file.write(&byte, 1);
       },
       "--train.steps=4", {"ckpt-2.h5", "damaged checkpoint"}},
      {"checkpoint", "a text file in its place",
       [](const fs::path& run) { write_text(run / "ckpt-2.h5", std::string(2000, 'x')); }, "--train.steps=4",
       {"ckpt-2.h5", "no 'temoe-checkpoint' header"}},
      {"checkpoint", "latest names a missing file", [](const fs::path& run) { write_text(run / "latest", "ckpt-9.h5\n"); },
       "--train.steps=4", {"ckpt-9.h5"}},
      {"checkpoint", "a NaN parameter (edited, resealed)", [](const fs::path& run) { poison_first_parameter(run / "ckpt-2.h5"); },
       "--train.steps=4", {"ckpt-2.h5", "non-finite value"}},
      {"checkpoint", "another controller shape", nullptr, "--train.steps=4 --controller.hidden=16", {"ckpt-2.h5"}},
  };
  for (const auto& bad : cases) check(bad);
}

TEST_F(BadRunInput, RunDirectoriesAreRefusedNamingThem) {
  const std::vector<BadCase> cases = {
      {"run directory", "resume with another eta", nullptr, "--train.steps=4 --controller.eta=0.5",
       {"ckpt-2.h5", "controller.eta was 0.02, now 0.5"}},
      {"run directory", "resume with another seed and batch", nullptr, "--train.steps=4 --train.seed=5 --train.batch_size=8",
       {"train.seed was 1, now 5", "train.batch_size was 4, now 8"}},
      {"run directory", "resume on another fine-tune of the same shapes", nullptr,
       "--train.steps=4 --model " + shell_quote(work_ / "other-model"), {"model.weights_content_hash was"}},
      {"run directory", "--resume where there is no checkpoint", nullptr, "--train.steps=2 --resume",
       {"holds no checkpoint to resume from"}, true},
      {"run directory", "--run-dir names a regular file",
       [](const fs::path& run) { write_text(run, "not a directory"); }, "--train.steps=2", {"cannot create the run directory"},
       true},
      {"run directory", "a checkpoint past train.steps", nullptr, "--train.steps=1", {"ckpt-2.h5", "past train.steps = 1"}},
  };
  for (const auto& bad : cases) check(bad);
}

TEST_F(BadRunInput, ConfigsAreRefusedNamingTheKey) {
  const std::vector<BadCase> cases = {
      {"config", "unknown key on the command line", nullptr, "--train.stepz=3", {"train.stepz"}, true},
      {"config", "a number that is not one", nullptr, "--train.steps=many", {"train.steps", "many"}, true},
      {"config", "--config file that does not exist", nullptr, "--config /nonexistent/temoe.cfg", {"/nonexistent/temoe.cfg"}, true},
      {"config", "k_hat larger than the experts", nullptr, "--train.steps=2 --controller.k_hat=99", {"k_hat"}, true},
      {"config", "an unknown dispatch mode", nullptr, "--train.steps=2 --parallel.dispatch=tokens", {"parallel.dispatch = tokens"}, true},
      {"config", "train.max_nonfinite_steps of 0", nullptr, "--train.steps=2 --train.max_nonfinite_steps=0",
       {"train.max_nonfinite_steps = 0"}, true},
      {"config", "a negative watchdog", nullptr, "--train.steps=2 --train.watchdog_seconds=-1", {"train.watchdog_seconds = -1"}, true},
      {"config", "a batch that does not split over the ranks", nullptr, "--train.steps=2 --train.batch_size=3",
       {"train.batch_size = 3", "2 ranks"}, true, 2},
      {"config", "a sequence longer than max_position_embeddings", nullptr,
       "--train.steps=2 --train.sequence_length=5000 --data.path=" + shell_quote(work_ / "long.h5"),
       {"train.sequence_length", "max_position_embeddings"}, true},
  };
  for (const auto& bad : cases) check(bad);
}

TEST_F(BadRunInput, DataFilesAreRefusedNamingThem) {
  write_text(work_ / "not-hdf5.h5", "just text, not an HDF5 file");
  const std::vector<BadCase> cases = {
      {"data", "data.path that does not exist", nullptr, "--train.steps=2 --data.path=" + shell_quote(work_ / "missing.h5"),
       {"missing.h5"}, true},
      {"data", "data.path that is not HDF5", nullptr, "--train.steps=2 --data.path=" + shell_quote(work_ / "not-hdf5.h5"),
       {"not-hdf5.h5"}, true},
  };
  for (const auto& bad : cases) check(bad);
}

}  // namespace
}  // namespace temoe
