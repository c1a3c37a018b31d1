// `temoe inspect FILE.h5` prints a checkpoint and verifies it: exit 0 for a good file, 1 with the
// reason for a damaged one.
#include <cstdio>

#include "src/checkpoint/checkpoint_file.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"
#include "tests/unit/checkpoint_test_support.hpp"

namespace temoe {
namespace {

using namespace checkpoint_testing;

class InspectCheckpoint : public ScratchDirectory {
 protected:
  // Runs temoe with `arguments`; returns the exit status and fills `output` (stdout and stderr).
  int run_temoe(const std::string& arguments, std::string& output) {
    FILE* pipe = ::popen((std::string(TEMOE_BINARY) + " " + arguments + " 2>&1").c_str(), "r");
    if (pipe == nullptr) return -1;
    char buffer[4096];
    while (const size_t count = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, count);
    const int status = ::pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

TEST_F(InspectCheckpoint, PrintsAndVerifiesAGoodFile) {
  write_checkpoint_file(path("ckpt-12.h5"), make_synthetic_checkpoint(12, 100000));
  std::string output;
  EXPECT_EQ(run_temoe("inspect " + path("ckpt-12.h5").string() + " --json " + path("report.json").string(), output), 0)
      << output;
  EXPECT_NE(output.find("step / tokens    12 / 49152"), std::string::npos) << output;
  EXPECT_NE(output.find("layer0.weight"), std::string::npos) << output;
  EXPECT_NE(output.find("verified         header, whole-file hash and the Fletcher32 checksums of all"), std::string::npos)
      << output;
  EXPECT_TRUE(fs::exists(path("report.json")));
}

TEST_F(InspectCheckpoint, FailsOnADamagedFile) {
  write_checkpoint_file(path("ckpt-12.h5"), make_synthetic_checkpoint(12, 100000));
  auto bytes = read_bytes(path("ckpt-12.h5"));
  bytes[bytes.size() / 3] ^= 0x20;
  write_bytes(path("ckpt-12.h5"), bytes);
  std::string output;
  EXPECT_EQ(run_temoe("inspect " + path("ckpt-12.h5").string(), output), 1) << output;
  EXPECT_NE(output.find("REFUSED (damaged): " + path("ckpt-12.h5").string()), std::string::npos) << output;
  output.clear();
  EXPECT_EQ(run_temoe("inspect " + path("ckpt-99.h5").string(), output), 1) << output;
  EXPECT_NE(output.find("REFUSED (missing)"), std::string::npos) << output;
}

}  // namespace
}  // namespace temoe
