// libFuzzer target: model.safetensors.index.json on arbitrary bytes, in a directory that holds the
// shards of the two sharded fixtures (tests/fixtures/mixtral_bf16_sharded, olmoe_f32_sharded), so
// that names the index may mention exist. Every tensor the checkpoint then lists is looked up.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "src/core/error.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path directory = temoe::fuzz::scratch_directory() / "model";
  fs::create_directories(directory);
  for (const char* fixture : {"mixtral_bf16_sharded", "olmoe_f32_sharded"}) {
    for (const auto& entry : fs::directory_iterator(fs::path(TEMOE_FIXTURE_DIR) / fixture)) {
      if (entry.path().extension() == ".safetensors") {
        fs::copy_file(entry.path(), directory / entry.path().filename(), fs::copy_options::overwrite_existing);
      }
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path directory = temoe::fuzz::scratch_directory() / "model";
  temoe::fuzz::write_input(directory / "model.safetensors.index.json", data, size);
  try {
    const temoe::SafetensorsCheckpoint checkpoint(directory);
    for (const auto& name : checkpoint.tensor_names()) {
      checkpoint.entry(name);
      checkpoint.file_of(name);
    }
  } catch (const temoe::Error&) {
  }
  return 0;
}
