#include "tests/support/shell_command.hpp"

#include <sys/wait.h>

#include <cstdio>

namespace temoe::testing {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

CommandResult run_shell_command(const std::string& command, std::chrono::seconds deadline) {
  const auto start = std::chrono::steady_clock::now();
  const std::string wrapped = "timeout -s KILL " + std::to_string(deadline.count()) + " bash -c " + shell_quote(command) +
                              " 2>&1";
  CommandResult result;
  std::FILE* pipe = ::popen(wrapped.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  while (std::fgets(buffer, sizeof(buffer), pipe)) result.output += buffer;
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.timed_out = result.exit_code == 124 || result.exit_code == 137;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace temoe::testing
