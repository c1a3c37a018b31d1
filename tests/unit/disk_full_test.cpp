// A full disk never replaces a good file: on a small tmpfs this test mounts (root only; skipped with a
// message elsewhere), a checkpoint commit, controller.h5 and an atomically replaced file (config.cfg,
// the metrics truncation on resume) each fail with a message once the disk is full, and leave the
// previous file byte for byte and no temporary behind.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/checkpoint_file.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/learner/controller_file.hpp"
#include "tests/unit/checkpoint_test_support.hpp"

namespace temoe {
namespace {

using namespace checkpoint_testing;

class DiskFull : public ScratchDirectory {
 protected:
  void SetUp() override {
    ScratchDirectory::SetUp();
    disk_ = path("disk");
    fs::create_directories(disk_);
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root (CI runs as root)";
    if (::mount("tmpfs", disk_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs at " << disk_ << ": " << std::strerror(errno)
                   << " (a container without CAP_SYS_ADMIN?)";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(disk_.c_str(), MNT_DETACH);
    ScratchDirectory::TearDown();
  }

  // Writes a filler file until the disk refuses more.
  void fill_the_disk() {
    std::ofstream filler(disk_ / "filler", std::ios::binary);
    const std::vector<char> block(4096, 'f');
    for (int i = 0; i < 100000 && filler; ++i) filler.write(block.data(), static_cast<std::streamsize>(block.size()));
    filler.flush();
    ASSERT_FALSE(filler.good()) << "the disk did not fill up";
  }

  void expect_no_temporaries() {
    for (const auto& entry : fs::directory_iterator(disk_)) {
      EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
    }
  }

  fs::path disk_;
  bool mounted_ = false;
};

TEST_F(DiskFull, AnAtomicReplacementKeepsTheOldFile) {
  const fs::path file = disk_ / "config.cfg";
  write_file_atomically(file, [](std::ostream& stream) { stream << "[train]\nsteps = 5\n"; });
  const auto good = read_bytes(file);
  fill_the_disk();
  try {
    write_file_atomically(file, [](std::ostream& stream) { stream << std::string(64 * 1024, 'x'); });
    ADD_FAILURE() << "a write to a full disk succeeded";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(".config.cfg.tmp-"), std::string::npos) << error.what();
  }
  EXPECT_EQ(read_bytes(file), good);
  expect_no_temporaries();
}

TEST_F(DiskFull, ControllerFileKeepsTheOldFile) {
  auto live = make_live_state();
  const fs::path file = disk_ / "controller.h5";
  save_controller(file, live->controller, "[controller]\nk_hat = 4\n");
  const auto good = read_bytes(file);
  fill_the_disk();
  EXPECT_THROW(save_controller(file, live->controller, std::string(256 * 1024, '#')), Error);
  EXPECT_EQ(read_bytes(file), good);
  expect_no_temporaries();
  // Still a readable controller file.
  EXPECT_EQ(read_controller_values(file).size(), live->controller.parameters().size());
}

TEST_F(DiskFull, ACheckpointCommitKeepsTheLatestCheckpoint) {
  auto live = make_live_state();
  CheckpointDirectory directory(disk_, 0);
  const fs::path first = directory.commit(make_sample_checkpoint(*live, 1));
  const auto good = read_bytes(first);
  const auto latest = read_bytes(disk_ / "latest");
  fill_the_disk();
  Checkpoint bigger = make_sample_checkpoint(*live, 2);
  bigger.config = std::string(512 * 1024, '#');
  try {
    directory.commit(bigger);
    ADD_FAILURE() << "a checkpoint was committed to a full disk";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("ckpt-2.h5"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("free"), std::string::npos) << error.what();
  }
  EXPECT_EQ(read_bytes(first), good);
  EXPECT_EQ(read_bytes(disk_ / "latest"), latest);
  EXPECT_FALSE(fs::exists(disk_ / "ckpt-2.h5"));
  expect_no_temporaries();
  fs::remove(disk_ / "filler");
  const auto loaded = load_latest_checkpoint(disk_, LoadOptions{});
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->checkpoint.step, 1);
}

}  // namespace
}  // namespace temoe
