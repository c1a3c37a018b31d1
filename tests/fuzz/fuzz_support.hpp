#pragma once
// Shared by the libFuzzer targets: a scratch directory of this process (under $TEMOE_FUZZ_SCRATCH,
// else on /dev/shm when it exists, so that the fsyncs of the checkpoint writer cost nothing) and
// writing the input to a file.
//
// Every target lets temoe::Error pass silently (a refusal is the right answer to a bad file) and
// lets every other exception escape, which libFuzzer reports as a crash: a reader must answer bad
// input with temoe::Error, never std::invalid_argument, std::bad_alloc or a signal.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace temoe::fuzz {

inline std::filesystem::path& scratch_path() {
  static std::filesystem::path path;
  return path;
}

inline const std::filesystem::path& scratch_directory() {
  static const bool made = [] {
    const char* chosen = std::getenv("TEMOE_FUZZ_SCRATCH");
    const std::filesystem::path base = chosen != nullptr && *chosen != '\0' ? std::filesystem::path(chosen)
                                       : std::filesystem::is_directory("/dev/shm")
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    scratch_path() = base / ("temoe_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(scratch_path());
    // Removed at a normal exit; libFuzzer often leaves through _Exit, so run_fuzzers.sh also
    // removes the whole $TEMOE_FUZZ_SCRATCH afterwards.
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_path(), ignored);
    });
    return true;
  }();
  (void)made;
  return scratch_path();
}

inline void write_input(const std::filesystem::path& path, const uint8_t* data, size_t size, const std::string& prefix = "") {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  stream.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!stream) std::abort();  // the scratch directory is gone or full: not the reader's fault
}

}  // namespace temoe::fuzz
