#pragma once
// Runs a shell command for end-to-end tests: stdout and stderr together, the exit status, and a
// deadline after which the whole command is killed (coreutils `timeout`), so a hang fails the test
// instead of stalling the suite.
#include <chrono>
#include <string>

namespace temoe::testing {

struct CommandResult {
  int exit_code = -1;     // the command's status; 124 or 137 after the deadline
  bool timed_out = false;
  double seconds = 0;
  std::string output;
};

CommandResult run_shell_command(const std::string& command, std::chrono::seconds deadline = std::chrono::seconds(120));

// A path's text quoted for the shell.
std::string shell_quote(const std::string& text);

}  // namespace temoe::testing
