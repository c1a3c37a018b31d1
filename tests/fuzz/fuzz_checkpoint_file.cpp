// libFuzzer target: read_checkpoint_file on a file written from the input. The input is the HDF5
// content; the target puts a valid 512-byte temoe header (length and hash of that content) in
// front, as reseal_checkpoint_file does, so that the fuzzer reaches the HDF5-level checks instead
// of stopping at the content hash. Seeds: make_checkpoint_seed (a real checkpoint's content).
#include <cstddef>
#include <cstdint>
#include <string>

#include "src/checkpoint/checkpoint_file.hpp"
#include "src/core/error.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = temoe::fuzz::scratch_directory() / "checkpoint.h5";
  temoe::fuzz::write_input(path, data, size, std::string(512, '\0'));
  try {
    temoe::reseal_checkpoint_file(path);
    temoe::read_checkpoint_file(path);
  } catch (const temoe::Error&) {
  }
  return 0;
}
