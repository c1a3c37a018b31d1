#pragma once
// Figures that a command prints are also written as JSON with --json FILE (atomically).
#include <nlohmann/json.hpp>
#include <string>

namespace temoe::launch {

void write_json_report(const std::string& path, const nlohmann::json& report);

}  // namespace temoe::launch
