#include "src/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "src/core/error.hpp"
#include "src/io/run_directory_lock.hpp"

namespace temoe {

namespace {

void fsync_path(const std::filesystem::path& path, bool directory) {
  const int descriptor = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(path.string() << ": cannot open for fsync: " << std::strerror(errno));
  const int status = ::fsync(descriptor);
  ::close(descriptor);
  if (status != 0) TEMOE_FAIL(path.string() << ": fsync failed: " << std::strerror(errno));
}

}  // namespace

void fsync_file(const std::filesystem::path& path) { fsync_path(path, false); }
void fsync_directory(const std::filesystem::path& directory) { fsync_path(directory, true); }

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  const auto directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const auto temporary = directory / ("." + path.filename().string() + ".tmp-" + temporary_suffix());
  try {
    {
      std::ofstream stream(temporary, std::ios::binary | std::ios::trunc);
      if (!stream) TEMOE_FAIL(temporary.string() << ": cannot create: " << std::strerror(errno));
      write(stream);
      stream.flush();
      if (!stream) TEMOE_FAIL(temporary.string() << ": write failed: " << std::strerror(errno));
      // close() writes what the stream still buffers: a full disk can show here first.
      stream.close();
      if (stream.fail()) TEMOE_FAIL(temporary.string() << ": close failed: " << std::strerror(errno));
    }
    fsync_path(temporary, false);
    std::filesystem::rename(temporary, path);
    fsync_path(directory, true);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
}

}  // namespace temoe
