#pragma once
// One exception type for everything a user can cause (bad files, configs, command lines) and for
// internal invariant checks. main() prefixes the message with the MPI rank before printing it.
#include <sstream>
#include <stdexcept>
#include <string>

namespace temoe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
[[noreturn]] void throw_check_failure(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace temoe

// TEMOE_CHECK(condition, streamed message): stays active in release builds, unlike assert.
#define TEMOE_CHECK(condition, message)                                        \
  do {                                                                         \
    if (!(condition)) {                                                        \
      std::ostringstream temoe_check_stream_;                                  \
      temoe_check_stream_ << message;                                          \
      ::temoe::detail::throw_check_failure(__FILE__, __LINE__,                 \
                                           temoe_check_stream_.str());         \
    }                                                                          \
  } while (0)

// TEMOE_FAIL(streamed message): a user-facing error with no file:line noise.
#define TEMOE_FAIL(message)                                                    \
  do {                                                                         \
    std::ostringstream temoe_fail_stream_;                                     \
    temoe_fail_stream_ << message;                                             \
    throw ::temoe::Error(temoe_fail_stream_.str());                            \
  } while (0)
