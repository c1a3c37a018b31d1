#pragma once
// The message of the temoe::Error that an action throws, for tests of refusals.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "src/core/error.hpp"

namespace temoe::testing {

// "" when `action` throws no temoe::Error (CheckpointError included).
inline std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

inline void expect_contains(const std::string& message, const std::string& text) {
  EXPECT_NE(message.find(text), std::string::npos) << "'" << text << "' is not in the message: '" << message << "'";
}

}  // namespace temoe::testing
