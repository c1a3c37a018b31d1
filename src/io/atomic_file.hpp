#pragma once
// Writes a file so that readers see either the old content or the complete new one: the data go
// to a temporary name beside the target, are flushed and fsync'ed, then renamed over it. A crash
// or an exception in `write` leaves no partial file behind.
#include <filesystem>
#include <functional>
#include <ostream>

namespace temoe {

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

// fsync(2) of a file, or of a directory (which makes a rename in it durable); throws naming the path.
void fsync_file(const std::filesystem::path& path);
void fsync_directory(const std::filesystem::path& directory);

}  // namespace temoe
