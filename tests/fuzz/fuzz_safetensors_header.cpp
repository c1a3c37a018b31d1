// libFuzzer target: one .safetensors file (8-byte header length, JSON header, data) on arbitrary
// bytes; every tensor the header admits is then read and converted to fp32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/core/error.hpp"
#include "src/model/safetensors_file.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = temoe::fuzz::scratch_directory() / "model.safetensors";
  temoe::fuzz::write_input(path, data, size);
  try {
    const temoe::SafetensorsFile file(path);
    for (const auto& [name, entry] : file.entries()) {
      // The header check bounds every entry by the file size, so this allocation is bounded too.
      std::vector<float> values(static_cast<size_t>(temoe::element_count(entry.shape)));
      file.read_as_float(name, values.data());
    }
  } catch (const temoe::Error&) {
  }
  return 0;
}
