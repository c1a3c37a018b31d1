// temoe bench checkpoint: commits a checkpoint of a given size (temporary file, fsync, rename,
// directory fsync, `latest`) and loads it back with full verification, beside the same disk's raw
// sequential speed measured in the same run: write(2) of the same byte count then fsync, and
// read(2) of it into new memory after its pages were dropped from the page cache. Runs alternate, medians are
// reported; target: a commit at >= 50% of the raw write speed.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "launch/benchmarks.hpp"
#include "launch/command_line.hpp"
#include "launch/json_report.hpp"
#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kBlockBytes = size_t{8} << 20;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void sync_directory(const fs::path& directory) {
  const int descriptor = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (descriptor >= 0) {
    ::fsync(descriptor);
    ::close(descriptor);
  }
}

// Asks the kernel to drop the file's (clean) pages from the page cache, so the next read hits the disk.
void drop_from_page_cache(const fs::path& file) {
  const int descriptor = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) return;
  ::fdatasync(descriptor);
  ::posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED);
  ::close(descriptor);
}

// The disk's floor: the same bytes with plain write(2) in 8 MiB blocks, then fsync (file and directory).
double raw_write_seconds(const fs::path& file, uint64_t bytes, const std::vector<char>& block) {
  const auto start = Clock::now();
  const int descriptor = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (descriptor < 0) TEMOE_FAIL(file.string() << ": cannot create: " << std::strerror(errno));
  for (uint64_t done = 0; done < bytes;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(block.size(), bytes - done));
    const ssize_t written = ::write(descriptor, block.data(), want);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      ::close(descriptor);
      TEMOE_FAIL(file.string() << ": write failed: " << std::strerror(errno));
    }
    done += static_cast<uint64_t>(written);
  }
  if (::fsync(descriptor) != 0) TEMOE_FAIL(file.string() << ": fsync failed: " << std::strerror(errno));
  ::close(descriptor);
  sync_directory(file.parent_path());
  return seconds_since(start);
}

// The floor of loading: read(2) in 8 MiB requests into a newly allocated buffer of the file's
// size, as a loader must put the bytes somewhere new (on machines where first-touch page faults
// are slow, that is a large part of it).
double raw_read_seconds(const fs::path& file, uint64_t bytes) {
  const auto start = Clock::now();
  const std::unique_ptr<char[]> memory(new char[bytes]);
  const int descriptor = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(file.string() << ": cannot open: " << std::strerror(errno));
  for (uint64_t done = 0; done < bytes;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, bytes - done));
    const ssize_t got = ::read(descriptor, memory.get() + done, want);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) TEMOE_FAIL(file.string() << ": read failed: " << (got == 0 ? "end of file" : std::strerror(errno)));
    done += static_cast<uint64_t>(got);
  }
  ::close(descriptor);
  return seconds_since(start);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

}  // namespace

int bench_checkpoint(const Arguments& arguments) {
  po::options_description options("temoe bench checkpoint");
  options.add_options()
      ("size-mb", po::value<double>()->default_value(256), "tensor data in the checkpoint (values + AdamW moments), MB")
      ("dir", po::value<std::string>()->default_value("."), "directory on the disk to measure (a scratch folder is made "
                                                             "inside and removed)")
      ("repeats", po::value<int>()->default_value(3), "alternating raw / checkpoint rounds; medians are reported")
      ("json", po::value<std::string>(), "also write the figures to this JSON file");
  const auto parsed = parse_command_line("bench checkpoint", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe bench checkpoint [--size-mb N] [--dir D] [--repeats R] [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  const double size_mb = values["size-mb"].as<double>();
  const int repeats = values["repeats"].as<int>();
  if (size_mb <= 0 || repeats < 1) TEMOE_FAIL("temoe bench checkpoint: --size-mb and --repeats must be positive");
  const fs::path scratch = fs::absolute(fs::path(values["dir"].as<std::string>()) /
                                        ("temoe-bench-checkpoint-" + std::to_string(::getpid())));
  fs::create_directories(scratch);
  struct RemoveScratch {
    fs::path path;
    ~RemoveScratch() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } remove_scratch{scratch};

  const Checkpoint checkpoint = make_synthetic_checkpoint(1, static_cast<int64_t>(size_mb * 1e6));
  const auto tensor_bytes = static_cast<uint64_t>(checkpoint_tensor_bytes(checkpoint));
  std::vector<char> block(kBlockBytes);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 131 + 7);  // not all zeros
  const fs::path raw_file = scratch / "raw.bin";
  const fs::path run_directory = scratch / "run";

  std::vector<double> raw_write, raw_read, commit, load, snapshot;
  uint64_t file_bytes = 0;
  for (int round = 0; round < repeats; ++round) {
    raw_write.push_back(raw_write_seconds(raw_file, tensor_bytes, block));
    drop_from_page_cache(raw_file);
    raw_read.push_back(raw_read_seconds(raw_file, tensor_bytes));
    fs::remove(raw_file);

    CheckpointDirectory directory(run_directory, 1);
    auto start = Clock::now();
    const fs::path file = directory.commit(checkpoint);
    commit.push_back(seconds_since(start));
    file_bytes = fs::file_size(file);
    drop_from_page_cache(file);
    start = Clock::now();
    const auto loaded = load_latest_checkpoint(run_directory, LoadOptions{});
    load.push_back(seconds_since(start));
    if (!loaded) TEMOE_FAIL("temoe bench checkpoint: the committed checkpoint was not found");
    verify_synthetic_checkpoint(loaded->checkpoint);
    fs::remove_all(run_directory);
  }

  // A background save would first copy the tensors (into fresh memory here, so page faults count).
  const auto start = Clock::now();
  const Checkpoint detached = checkpoint.detached();
  snapshot.push_back(seconds_since(start));

  const double mb = static_cast<double>(tensor_bytes) / 1e6;
  const double raw_write_rate = mb / median(raw_write), commit_rate = mb / median(commit);
  const double raw_read_rate = mb / median(raw_read), load_rate = mb / median(load);
  std::printf("checkpoint: %.1f MB of tensors (%zu parameters, values + AdamW moments), file %.1f MB, in %s\n", mb,
              checkpoint.parameter_sets[0].values.size(), static_cast<double>(file_bytes) / 1e6, scratch.parent_path().c_str());
  std::printf("medians of %d alternating rounds; MB = 10^6 bytes of tensor data\n", repeats);
  std::printf("  raw write(2) + fsync     %9.1f MB/s  (%.3f s)\n", raw_write_rate, median(raw_write));
  std::printf("  checkpoint commit        %9.1f MB/s  (%.3f s)  %5.1f%% of raw write  [target >= 50%%]\n", commit_rate,
              median(commit), 100.0 * commit_rate / raw_write_rate);
  std::printf("  raw read(2) to new memory%9.1f MB/s  (%.3f s)  (page cache dropped first)\n", raw_read_rate,
              median(raw_read));
  std::printf("  checkpoint load+verify   %9.1f MB/s  (%.3f s)  %5.1f%% of raw read\n", load_rate, median(load),
              100.0 * load_rate / raw_read_rate);
  std::printf("  snapshot (deep copy into new memory, for a background save) %.3f s\n", median(snapshot));
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(),
                      {{"benchmark", "checkpoint"},
                       {"tensor_bytes", tensor_bytes},
                       {"file_bytes", file_bytes},
                       {"repeats", repeats},
                       {"directory", scratch.parent_path().string()},
                       {"raw_write_mb_per_s", raw_write_rate},
                       {"commit_mb_per_s", commit_rate},
                       {"commit_fraction_of_raw_write", commit_rate / raw_write_rate},
                       {"raw_read_mb_per_s", raw_read_rate},
                       {"load_mb_per_s", load_rate},
                       {"load_fraction_of_raw_read", load_rate / raw_read_rate},
                       {"snapshot_seconds", median(snapshot)},
                       {"seconds", {{"raw_write", raw_write}, {"commit", commit}, {"raw_read", raw_read}, {"load", load}}}});
  }
  return 0;
}

}  // namespace temoe::launch
