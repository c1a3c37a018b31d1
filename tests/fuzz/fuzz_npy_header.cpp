// libFuzzer target: the .npy reader (header parsing, shape, size checks) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = temoe::fuzz::scratch_directory() / "input.npy";
  temoe::fuzz::write_input(path, data, size);
  try {
    temoe::read_integer_npy(path);
  } catch (const temoe::Error&) {
  }
  try {
    temoe::read_float_npy(path);
  } catch (const temoe::Error&) {
  }
  return 0;
}
