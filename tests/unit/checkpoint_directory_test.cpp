// A run directory's checkpoints: atomic commit with a `latest` pointer, retention of the last N
// (never the one `latest` names), removal of leftover temporaries, and the loader: nothing to
// load, the latest, a refusal naming the damaged file, and the caller-chosen loud fallback.
#include <sstream>

#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/checkpoint_file.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"
#include "tests/unit/checkpoint_test_support.hpp"

namespace temoe {
namespace {

using namespace checkpoint_testing;

LoadOptions options(bool fall_back, std::ostream* warnings, ModelIdentity model = {}) {
  LoadOptions options;
  options.expected_model = std::move(model);
  options.fall_back_to_older = fall_back;
  options.warnings = warnings;
  return options;
}

class CheckpointDirectoryTest : public ScratchDirectory {
 protected:
  std::string latest_text() {
    std::ifstream stream(path("latest"));
    std::string text;
    std::getline(stream, text);
    return text;
  }
  std::vector<std::string> checkpoint_names() {
    std::vector<std::string> names;
    for (const auto& file : list_checkpoints(directory_)) names.push_back(file.filename().string());
    return names;
  }
  void damage(const fs::path& file) {
    auto bytes = read_bytes(file);
    bytes[bytes.size() / 2] ^= 0x01;
    write_bytes(file, bytes);
  }
};

TEST_F(CheckpointDirectoryTest, CommitWritesFileAndLatestAndKeepsTheLastN) {
  CheckpointDirectory directory(directory_, 2);
  for (const int64_t step : {10, 20, 30, 40}) {
    const fs::path file = directory.commit(make_synthetic_checkpoint(step, 4096));
    EXPECT_EQ(file, path("ckpt-" + std::to_string(step) + ".h5"));
    EXPECT_EQ(latest_text(), "ckpt-" + std::to_string(step) + ".h5");
  }
  EXPECT_EQ(checkpoint_names(), (std::vector<std::string>{"ckpt-30.h5", "ckpt-40.h5"}));
  for (const auto& entry : fs::directory_iterator(directory_)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
  const auto loaded = load_latest_checkpoint(directory_, {});
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->file, path("ckpt-40.h5"));
  EXPECT_TRUE(loaded->skipped.empty());
  verify_synthetic_checkpoint(loaded->checkpoint);
  EXPECT_EQ(loaded->checkpoint.step, 40);
}

TEST_F(CheckpointDirectoryTest, KeepOneLeavesOnlyTheLatestAndZeroKeepsAll) {
  {
    CheckpointDirectory directory(directory_, 1);
    for (const int64_t step : {1, 2, 3}) directory.commit(make_synthetic_checkpoint(step, 1024));
    EXPECT_EQ(checkpoint_names(), (std::vector<std::string>{"ckpt-3.h5"}));
    EXPECT_EQ(latest_text(), "ckpt-3.h5");
  }
  CheckpointDirectory all(directory_, 0);
  for (const int64_t step : {4, 5}) all.commit(make_synthetic_checkpoint(step, 1024));
  EXPECT_EQ(checkpoint_names(), (std::vector<std::string>{"ckpt-3.h5", "ckpt-4.h5", "ckpt-5.h5"}));
}

// After resuming from an older checkpoint, later-step files of the abandoned timeline are not
// counted against the retention and not deleted; recommitting a step replaces its file.
TEST_F(CheckpointDirectoryTest, RetentionIgnoresLaterStepsOfAnAbandonedTimeline) {
  CheckpointDirectory directory(directory_, 2);
  for (const int64_t step : {1, 2, 3}) directory.commit(make_synthetic_checkpoint(step, 1024));
  directory.commit(make_synthetic_checkpoint(1, 2048));  // resumed from step 0 elsewhere, say
  EXPECT_EQ(latest_text(), "ckpt-1.h5");
  EXPECT_EQ(checkpoint_names(), (std::vector<std::string>{"ckpt-1.h5", "ckpt-2.h5", "ckpt-3.h5"}));
  const auto loaded = load_latest_checkpoint(directory_, {});
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->checkpoint.step, 1);
  EXPECT_EQ(checkpoint_tensor_bytes(loaded->checkpoint), checkpoint_tensor_bytes(make_synthetic_checkpoint(1, 2048)));
}

TEST_F(CheckpointDirectoryTest, LeftoverTemporariesAreRemovedAtStart) {
  write_bytes(path(".ckpt-7.h5.tmp-12345"), std::vector<char>(100, 'x'));
  write_bytes(path(".latest.tmp-12345"), std::vector<char>(5, 'x'));
  write_bytes(path("notes.txt"), std::vector<char>(5, 'x'));
  const CheckpointDirectory directory(directory_, 3);
  EXPECT_FALSE(fs::exists(path(".ckpt-7.h5.tmp-12345")));
  EXPECT_FALSE(fs::exists(path(".latest.tmp-12345")));
  EXPECT_TRUE(fs::exists(path("notes.txt")));  // not ours: left alone
}

TEST_F(CheckpointDirectoryTest, EmptyOrMissingDirectoryHasNothingToLoad) {
  EXPECT_FALSE(load_latest_checkpoint(directory_, {}).has_value());
  EXPECT_FALSE(load_latest_checkpoint(path("does-not-exist"), {}).has_value());
}

TEST_F(CheckpointDirectoryTest, RefusesLatestPointingToMissingFile) {
  CheckpointDirectory directory(directory_, 0);
  directory.commit(make_synthetic_checkpoint(5, 1024));
  directory.commit(make_synthetic_checkpoint(6, 1024));
  fs::remove(path("ckpt-6.h5"));
  try {
    load_latest_checkpoint(directory_, {});
    ADD_FAILURE() << "a `latest` naming a missing file was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_EQ(error.problem(), CheckpointProblem::missing);
    const std::string message = error.what();
    EXPECT_NE(message.find(path("latest").string() + " names ckpt-6.h5, but " + path("ckpt-6.h5").string() +
                           " does not exist"),
              std::string::npos)
        << message;
  }
  std::ostringstream warnings;
  const auto loaded = load_latest_checkpoint(directory_, options(true, &warnings));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->checkpoint.step, 5);
  EXPECT_NE(warnings.str().find("WARNING"), std::string::npos) << warnings.str();
  EXPECT_NE(warnings.str().find("ckpt-6.h5"), std::string::npos) << warnings.str();
}

TEST_F(CheckpointDirectoryTest, RefusesGarbageLatestPointer) {
  CheckpointDirectory directory(directory_, 0);
  directory.commit(make_synthetic_checkpoint(5, 1024));
  write_bytes(path("latest"), {'.', '.', '/', 'x'});
  try {
    load_latest_checkpoint(directory_, {});
    ADD_FAILURE() << "a garbage `latest` was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_NE(std::string(error.what()).find("names '../x', expected a file name of the form ckpt-<step>.h5"),
              std::string::npos)
        << error.what();
  }
  std::ostringstream warnings;
  const auto loaded = load_latest_checkpoint(directory_, options(true, &warnings));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->checkpoint.step, 5);
}

// The latest checkpoint damaged: refused by default with a message naming the file; with the
// caller's permission, the newest older one that verifies is loaded after a loud warning naming
// the damaged file.
TEST_F(CheckpointDirectoryTest, DamagedLatestIsRefusedOrFallsBackLoudly) {
  CheckpointDirectory directory(directory_, 3);
  for (const int64_t step : {100, 200, 300}) directory.commit(make_synthetic_checkpoint(step, 8192));
  damage(path("ckpt-300.h5"));
  damage(path("ckpt-200.h5"));
  try {
    load_latest_checkpoint(directory_, {});
    ADD_FAILURE() << "a damaged latest checkpoint was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_EQ(error.problem(), CheckpointProblem::damaged);
    EXPECT_NE(std::string(error.what()).find(path("ckpt-300.h5").string() + ": damaged checkpoint"), std::string::npos)
        << error.what();
  }
  std::ostringstream warnings;
  const auto loaded = load_latest_checkpoint(directory_, options(true, &warnings));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->file, path("ckpt-100.h5"));
  EXPECT_EQ(loaded->checkpoint.step, 100);
  ASSERT_EQ(loaded->skipped.size(), 2u);
  const std::string text = warnings.str();
  EXPECT_NE(text.find("WARNING: checkpoint " + path("ckpt-300.h5").string() + " is damaged"), std::string::npos) << text;
  EXPECT_NE(text.find("WARNING: checkpoint " + path("ckpt-200.h5").string() + " is damaged"), std::string::npos) << text;
  EXPECT_NE(text.find("resuming from the OLDER checkpoint " + path("ckpt-100.h5").string()), std::string::npos) << text;

  damage(path("ckpt-100.h5"));
  try {
    load_latest_checkpoint(directory_, options(true, &warnings));
    ADD_FAILURE() << "no usable checkpoint, yet one was loaded";
  } catch (const CheckpointError& error) {
    EXPECT_NE(std::string(error.what()).find("no usable checkpoint"), std::string::npos) << error.what();
  }
}

// A checkpoint of another model is never skipped for an older one: they would all be foreign.
TEST_F(CheckpointDirectoryTest, RefusesAnotherModelEvenWithFallback) {
  CheckpointDirectory directory(directory_, 3);
  directory.commit(make_synthetic_checkpoint(1, 1024));
  const ModelIdentity other{"mixtral", 1234};
  try {
    load_latest_checkpoint(directory_, options(true, nullptr, other));
    ADD_FAILURE() << "another model's checkpoint was accepted";
  } catch (const CheckpointError& error) {
    EXPECT_EQ(error.problem(), CheckpointProblem::incompatible);
    EXPECT_NE(std::string(error.what()).find("checkpoint of another model"), std::string::npos) << error.what();
  }
  const auto loaded = load_latest_checkpoint(directory_, options(false, nullptr, make_synthetic_checkpoint(0, 0).model));
  EXPECT_TRUE(loaded.has_value());
}

TEST_F(CheckpointDirectoryTest, MissingLatestUsesTheNewestFileWithANote) {
  CheckpointDirectory directory(directory_, 0);
  directory.commit(make_synthetic_checkpoint(3, 1024));
  directory.commit(make_synthetic_checkpoint(4, 1024));
  fs::remove(path("latest"));  // as after a crash between the first rename and the first pointer
  std::ostringstream warnings;
  const auto loaded = load_latest_checkpoint(directory_, options(false, &warnings));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->checkpoint.step, 4);
  EXPECT_NE(warnings.str().find("does not exist"), std::string::npos) << warnings.str();
}

TEST(SyntheticCheckpoint, VerifiesItsOwnPatternAndSize) {
  const Checkpoint checkpoint = make_synthetic_checkpoint(77, 3 << 20);
  EXPECT_NO_THROW(verify_synthetic_checkpoint(checkpoint));
  EXPECT_NEAR(static_cast<double>(checkpoint_tensor_bytes(checkpoint)), 3 << 20, 3 * 4 * 256 * 8);
  Checkpoint changed = checkpoint.detached();
  changed.parameter_sets[0].second_moments[3].data()[100] += 1.0f;
  EXPECT_THROW(verify_synthetic_checkpoint(changed), Error);
}

}  // namespace
}  // namespace temoe
