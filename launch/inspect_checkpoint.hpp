#pragma once
// `temoe inspect FILE.h5`: a checkpoint's contents, verified (non-zero exit if damaged).
#include <filesystem>
#include <string>

namespace temoe::launch {

// Prints the checkpoint and returns 0, or prints why it is refused and returns 1. With a
// non-empty json_path the summary is also written there.
int inspect_checkpoint(const std::filesystem::path& file, const std::string& json_path);

}  // namespace temoe::launch
