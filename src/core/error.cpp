#include "src/core/error.hpp"

#include <filesystem>

namespace temoe::detail {

void throw_check_failure(const char* file, int line, const std::string& message) {
  std::ostringstream stream;
  stream << message << " [" << std::filesystem::path(file).filename().string() << ":" << line << "]";
  throw Error(stream.str());
}

}  // namespace temoe::detail
