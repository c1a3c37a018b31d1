#include "src/model/safetensors_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/core/checked_size.hpp"
#include "src/core/error.hpp"

namespace temoe {

namespace {

// Headers of real checkpoints are well under a megabyte; this bounds what a corrupt length can ask.
constexpr uint64_t kMaximumHeaderBytes = 100ull << 20;

void read_exactly(int descriptor, void* destination, uint64_t bytes, uint64_t offset,
                  const std::filesystem::path& path) {
  auto* cursor = static_cast<char*>(destination);
  while (bytes > 0) {
    const ssize_t got = ::pread(descriptor, cursor, bytes, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      TEMOE_FAIL(path.string() << ": read of " << bytes << " bytes at offset " << offset << " failed: "
                               << (got < 0 ? std::strerror(errno) : "unexpected end of file"));
    }
    cursor += got;
    bytes -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

SafetensorsEntry parse_entry(const std::filesystem::path& path, const std::string& name,
                             const nlohmann::json& value, uint64_t data_start, uint64_t data_bytes) {
  const auto where = [&] { return path.string() + ": tensor '" + name + "'"; };
  if (!value.is_object()) TEMOE_FAIL(where() << ": header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) TEMOE_FAIL(where() << ": header entry has no '" << key << "'");
  }
  SafetensorsEntry entry;
  if (!value["dtype"].is_string()) TEMOE_FAIL(where() << ": 'dtype' is not a string");
  const std::string dtype_name = value["dtype"].get<std::string>();
  const auto dtype = parse_dtype(dtype_name);
  if (!dtype) TEMOE_FAIL(where() << " has dtype '" << dtype_name << "'; temoe reads F32, F16, BF16 and U8 (MXFP4 blocks and scales)");
  entry.dtype = *dtype;
  if (!value["shape"].is_array()) TEMOE_FAIL(where() << ": 'shape' is not an array");
  for (const auto& extent : value["shape"]) {
    if (!extent.is_number_unsigned() || extent.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      TEMOE_FAIL(where() << ": shape " << value["shape"].dump() << " is not a list of integers in [0, "
                         << std::numeric_limits<int64_t>::max() << "]");
    }
    entry.shape.push_back(extent.get<int64_t>());
  }
  const auto& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    TEMOE_FAIL(where() << ": 'data_offsets' " << offsets.dump() << " is not [begin, end]");
  }
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (end < begin) TEMOE_FAIL(where() << ": data_offsets [" << begin << ", " << end << "] end before they begin");
  // Checked: a shape whose byte count wraps around 64 bits would otherwise match tiny offsets.
  const auto expected =
      static_cast<uint64_t>(checked_bytes(entry.shape, static_cast<int64_t>(dtype_size(entry.dtype)), where()));
  if (end - begin != expected) {
    TEMOE_FAIL(where() << ": data_offsets [" << begin << ", " << end << "] hold " << end - begin << " bytes, but shape "
                       << shape_string(entry.shape) << " of " << dtype_name << " needs " << expected);
  }
  if (end > data_bytes) {
    TEMOE_FAIL(where() << ": data ends at byte " << data_start + end << " but the file has only " << data_start + data_bytes
                       << " bytes (truncated file?)");
  }
  entry.file_offset = data_start + begin;
  entry.byte_count = expected;
  return entry;
}

}  // namespace

SafetensorsFile::SafetensorsFile(std::filesystem::path path) : path_(std::move(path)) {
  descriptor_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor_ < 0) TEMOE_FAIL(path_.string() << ": cannot open: " << std::strerror(errno));
  try {
    const off_t end = ::lseek(descriptor_, 0, SEEK_END);
    if (end < 0) TEMOE_FAIL(path_.string() << ": cannot determine the file size: " << std::strerror(errno));
    const auto file_size = static_cast<uint64_t>(end);
    if (file_size < 8) {
      TEMOE_FAIL(path_.string() << ": file has " << file_size
                                << " bytes; a safetensors file starts with an 8-byte header length (truncated file?)");
    }
    unsigned char length_bytes[8];
    read_exactly(descriptor_, length_bytes, 8, 0, path_);
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | length_bytes[i];
    if (header_length > file_size - 8 || header_length > kMaximumHeaderBytes) {
      TEMOE_FAIL(path_.string() << ": header length " << header_length << " runs past the end of the file ("
                                << file_size << " bytes)");
    }
    std::string header(header_length, '\0');
    read_exactly(descriptor_, header.data(), header_length, 8, path_);
    nlohmann::json parsed;
    try {
      parsed = nlohmann::json::parse(header);
    } catch (const nlohmann::json::exception& error) {
      TEMOE_FAIL(path_.string() << ": malformed JSON header: " << error.what());
    }
    if (!parsed.is_object()) TEMOE_FAIL(path_.string() << ": JSON header is not an object");
    const uint64_t data_start = 8 + header_length;
    for (const auto& [name, value] : parsed.items()) {
      if (name == "__metadata__") continue;
      entries_.emplace(name, parse_entry(path_, name, value, data_start, file_size - data_start));
    }
  } catch (...) {
    ::close(descriptor_);
    throw;
  }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)), descriptor_(other.descriptor_), entries_(std::move(other.entries_)),
      bytes_read_(other.bytes_read_) {
  other.descriptor_ = -1;
}

SafetensorsFile::~SafetensorsFile() {
  if (descriptor_ >= 0) ::close(descriptor_);
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const auto found = entries_.find(name);
  if (found == entries_.end()) TEMOE_FAIL(path_.string() << ": no tensor named '" << name << "'");
  return found->second;
}

void SafetensorsFile::read_rows_raw(const std::string& name, int64_t first, int64_t count, void* destination) const {
  const SafetensorsEntry& found = entry(name);
  TEMOE_CHECK(!found.shape.empty() && first >= 0 && count >= 0 && first + count <= found.shape[0],
              path_.string() << ": rows [" << first << ", " << first + count << ") of tensor '" << name << "' of shape "
                             << shape_string(found.shape));
  const uint64_t row_bytes = found.byte_count / static_cast<uint64_t>(found.shape[0]);
  const uint64_t bytes = row_bytes * static_cast<uint64_t>(count);
  read_exactly(descriptor_, destination, bytes, found.file_offset + row_bytes * static_cast<uint64_t>(first), path_);
  bytes_read_ += bytes;
}

void SafetensorsFile::read_rows_as_float(const std::string& name, int64_t first, int64_t count, float* destination) const {
  const SafetensorsEntry& found = entry(name);
  const auto values = static_cast<size_t>(element_count(found.shape) / std::max<int64_t>(found.shape.at(0), 1) * count);
  std::vector<unsigned char> buffer(values * dtype_size(found.dtype));
  read_rows_raw(name, first, count, buffer.data());
  convert_to_float(found.dtype, buffer.data(), destination, values);
}

void SafetensorsFile::read_as_float(const std::string& name, float* destination) const {
  const SafetensorsEntry& found = entry(name);
  const auto count = static_cast<size_t>(element_count(found.shape));
  if (found.dtype == DType::f32) {
    read_exactly(descriptor_, destination, found.byte_count, found.file_offset, path_);
  } else {
    std::vector<unsigned char> buffer(found.byte_count);
    read_exactly(descriptor_, buffer.data(), found.byte_count, found.file_offset, path_);
    convert_to_float(found.dtype, buffer.data(), destination, count);
  }
  bytes_read_ += found.byte_count;
}

}  // namespace temoe
