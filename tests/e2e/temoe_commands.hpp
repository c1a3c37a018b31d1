#pragma once
// What the end-to-end tests run: this build's temoe binary, and launch/mpirun.sh (which adds
// --allow-run-as-root and --oversubscribe where the machine needs them).
#include <string>

#include "tests/support/shell_command.hpp"

namespace temoe::testing {

inline const std::string kBinary = TEMOE_BINARY;
inline const std::string kMpirun = "bash " + shell_quote(std::string(TEMOE_SOURCE_DIR) + "/launch/mpirun.sh");

}  // namespace temoe::testing
