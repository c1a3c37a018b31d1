// libFuzzer target: config.json (ModelConfig::from_file) on arbitrary bytes. A config that is
// accepted must also survive the round trip through to_json(), and its parameter counts must be
// computable (they are checked against int64 overflow).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/model/model_config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = temoe::fuzz::scratch_directory() / "config.json";
  temoe::fuzz::write_input(path, data, size);
  temoe::ModelConfig config;
  try {
    config = temoe::ModelConfig::from_file(path);
  } catch (const temoe::Error&) {
    return 0;
  }
  // Accepted: these must not throw.
  config.parameters_total();
  config.parameters_active_per_token();
  const temoe::ModelConfig again = temoe::ModelConfig::from_json(config.to_json(), "round trip");
  if (again.to_json() != config.to_json()) std::abort();
  return 0;
}
