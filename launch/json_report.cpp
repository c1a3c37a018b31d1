#include "launch/json_report.hpp"

#include "src/io/atomic_file.hpp"

namespace temoe::launch {

void write_json_report(const std::string& path, const nlohmann::json& report) {
  write_file_atomically(path, [&](std::ostream& stream) { stream << report.dump(2) << "\n"; });
}

}  // namespace temoe::launch
