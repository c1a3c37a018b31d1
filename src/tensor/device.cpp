#include "src/tensor/device.hpp"

#include "src/core/error.hpp"

namespace temoe {

std::string to_string(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  TEMOE_FAIL("unknown device '" << name << "': expected 'cpu' or 'cuda'");
}

}  // namespace temoe
