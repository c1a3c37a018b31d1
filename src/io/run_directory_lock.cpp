#include "src/io/run_directory_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <ostream>
#include <sstream>

#include "src/core/error.hpp"

namespace temoe {

namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

std::string read_all(int descriptor) {
  std::string text;
  char buffer[512];
  if (::lseek(descriptor, 0, SEEK_SET) < 0) return text;
  for (ssize_t count; (count = ::read(descriptor, buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<size_t>(count));
  return text;
}

// The holder's lines, "key value" each; a missing or mangled file gives empty fields.
RunDirectoryHolder parse_holder(const std::string& text) {
  RunDirectoryHolder holder;
  std::istringstream stream(text);
  for (std::string key, value; stream >> key && std::getline(stream >> std::ws, value);) {
    if (key == "host") holder.host = value;
    else if (key == "pid") holder.pid = std::strtol(value.c_str(), nullptr, 10);
    else if (key == "job") holder.job = value;
    else if (key == "since") holder.since = value;
  }
  return holder;
}

}  // namespace

RunDirectoryHolder current_holder() {
  RunDirectoryHolder holder;
  holder.host = host_name();
  holder.pid = static_cast<long>(::getpid());
  const char* job = std::getenv("SLURM_JOB_ID");
  const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
  holder.job = job != nullptr ? std::string(job) + (task != nullptr ? std::string("_") + task : "") : "none";
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &utc);
  holder.since = stamp;
  return holder;
}

std::string describe(const RunDirectoryHolder& holder) {
  if (holder.host.empty() && holder.pid == 0) return "a process that left no details";
  std::ostringstream text;
  text << "host " << holder.host << ", pid " << holder.pid << ", Slurm job " << holder.job << ", since " << holder.since;
  return text.str();
}

std::string temporary_suffix() { return host_name() + "-" + std::to_string(::getpid()); }

RunDirectoryLock::RunDirectoryLock(const std::filesystem::path& run_directory, std::ostream& notes)
    : path_(run_directory / ".lock") {
  std::error_code error;
  created_directory_ = std::filesystem::create_directories(run_directory, error);
  if (error) TEMOE_FAIL(run_directory.string() << ": cannot create the run directory: " << error.message());
  descriptor_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (descriptor_ < 0) TEMOE_FAIL(path_.string() << ": cannot open the run directory's lock: " << std::strerror(errno));
  if (::flock(descriptor_, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    const RunDirectoryHolder holder = parse_holder(read_all(descriptor_));
    ::close(descriptor_);
    descriptor_ = -1;
    if (saved == EWOULDBLOCK) {
      TEMOE_FAIL(run_directory.string() << " is in use by another job (" << describe(holder) << ", lock "
                                        << path_.string() << "); refusing to write to it: wait for that job to end, "
                                        << "or give this one another --run-dir");
    }
    TEMOE_FAIL(path_.string() << ": cannot lock the run directory: " << std::strerror(saved));
  }
  // A holder that died (killed, crashed, node lost) leaves its text behind; a clean exit empties it.
  const std::string previous = read_all(descriptor_);
  if (!previous.empty()) {
    notes << "note: " << run_directory.string() << ": taking over the lock of a job that is gone ("
          << describe(parse_holder(previous)) << ")\n";
  }
  const RunDirectoryHolder self = current_holder();
  const std::string text = "host " + self.host + "\npid " + std::to_string(self.pid) + "\njob " + self.job +
                           "\nsince " + self.since + "\n";
  if (::ftruncate(descriptor_, 0) != 0 || ::pwrite(descriptor_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
      ::fsync(descriptor_) != 0) {
    const int saved = errno;
    ::close(descriptor_);
    descriptor_ = -1;
    TEMOE_FAIL(path_.string() << ": cannot record this job in the run directory's lock: " << std::strerror(saved));
  }
}

RunDirectoryLock::~RunDirectoryLock() {
  if (descriptor_ < 0) return;
  // Emptied on a clean release, so the next job does not report a take-over. Failures here only
  // cost that note, so they are not errors.
  if (::ftruncate(descriptor_, 0) == 0) ::fsync(descriptor_);
  if (created_directory_) {
    std::error_code error;
    const auto directory = path_.parent_path();
    bool only_the_lock = true;
    for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
      only_the_lock = only_the_lock && entry.path().filename() == ".lock";
    }
    if (!error && only_the_lock) {
      std::filesystem::remove(path_, error);  // still holding the flock, so nobody took it meanwhile
      std::filesystem::remove(directory, error);
    }
  }
  ::close(descriptor_);  // releases the flock
}

}  // namespace temoe
