#pragma once
// What the end-to-end tests run: this build's temoe binary, and launch/mpirun.sh (which adds
// --allow-run-as-root and --oversubscribe where the machine needs them).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/support/shell_command.hpp"

namespace temoe::testing {

inline const std::string kBinary = TEMOE_BINARY;
inline const std::string kMpirun = "bash " + shell_quote(std::string(TEMOE_SOURCE_DIR) + "/launch/mpirun.sh");

// What a controller-training test trains on, written into `work`: data.h5 (`documents` documents
// of the topic language, seed 1) and model/ (the tiny Mixtral preset, seed 3).
inline void make_training_files(const std::filesystem::path& work, int documents) {
  for (const std::string& command :
       {kBinary + " make-data --out " + shell_quote(work / "data.h5") + " --seed 1 --data.documents=" + std::to_string(documents),
        kBinary + " init-model --arch mixtral --preset tiny --seed 3 --out " + shell_quote(work / "model")}) {
    const auto result = run_shell_command(command);
    ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  }
}

}  // namespace temoe::testing
