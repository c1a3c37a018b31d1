#pragma once
#include <string>

namespace temoe {

enum class Device { cpu, cuda };

std::string to_string(Device device);
Device parse_device(const std::string& name);  // "cpu" or "cuda"; throws otherwise

}  // namespace temoe
