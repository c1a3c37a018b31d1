#include "src/io/npy_file.hpp"

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"

namespace temoe {

namespace {

struct NpyHeader {
  std::string descr;
  Shape shape;
  std::streamoff data_offset = 0;
};

NpyHeader read_header(std::ifstream& stream, const std::filesystem::path& path) {
  char magic[8];
  stream.read(magic, 8);
  if (!stream || std::memcmp(magic, "\x93NUMPY", 6) != 0) TEMOE_FAIL(path.string() << ": not a NumPy .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_length = 0;
  if (major == 1) {
    unsigned char bytes[2];
    stream.read(reinterpret_cast<char*>(bytes), 2);
    header_length = bytes[0] | (bytes[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char bytes[4];
    stream.read(reinterpret_cast<char*>(bytes), 4);
    header_length = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (static_cast<uint32_t>(bytes[3]) << 24);
  } else {
    TEMOE_FAIL(path.string() << ": unsupported .npy format version " << major);
  }
  if (!stream || header_length > (1u << 20)) TEMOE_FAIL(path.string() << ": truncated or corrupt .npy header");
  std::string header(header_length, '\0');
  stream.read(header.data(), header_length);
  if (!stream) TEMOE_FAIL(path.string() << ": truncated .npy header");
  NpyHeader parsed;
  parsed.data_offset = stream.tellg();
  std::smatch match;
  if (!std::regex_search(header, match, std::regex(R"('descr'\s*:\s*'([^']*)')"))) {
    TEMOE_FAIL(path.string() << ": .npy header has no 'descr'");
  }
  parsed.descr = match[1];
  if (std::regex_search(header, match, std::regex(R"('fortran_order'\s*:\s*True)"))) {
    TEMOE_FAIL(path.string() << ": Fortran-ordered arrays are not supported; save a C-ordered array");
  }
  if (!std::regex_search(header, match, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) {
    TEMOE_FAIL(path.string() << ": .npy header has no 'shape'");
  }
  std::stringstream extents(match[1].str());
  std::string item;
  while (std::getline(extents, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    parsed.shape.push_back(std::stoll(item));
  }
  return parsed;
}

void check_data_size(std::ifstream& stream, const std::filesystem::path& path, const NpyHeader& header, size_t item) {
  stream.seekg(0, std::ios::end);
  const auto available = static_cast<uint64_t>(stream.tellg() - header.data_offset);
  const auto needed = static_cast<uint64_t>(element_count(header.shape)) * item;
  if (available < needed) {
    TEMOE_FAIL(path.string() << ": shape " << shape_string(header.shape) << " needs " << needed << " data bytes, the file has "
                             << available << " (truncated?)");
  }
  stream.seekg(header.data_offset);
}

void write_npy(const std::filesystem::path& path, const char* descr, const Shape& shape, const void* data, size_t bytes) {
  std::ostringstream dict;
  dict << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? "," : "") << (i + 1 < shape.size() ? " " : "");
  dict << "), }";
  std::string header = dict.str();
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  write_file_atomically(path, [&](std::ostream& stream) {
    stream.write("\x93NUMPY\x01\x00", 8);
    const auto length = static_cast<uint16_t>(header.size());
    const char length_bytes[2] = {static_cast<char>(length & 0xFF), static_cast<char>(length >> 8)};
    stream.write(length_bytes, 2);
    stream.write(header.data(), static_cast<std::streamsize>(header.size()));
    stream.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  });
}

}  // namespace

IntegerArray read_integer_npy(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) TEMOE_FAIL(path.string() << ": cannot open");
  const NpyHeader header = read_header(stream, path);
  IntegerArray array;
  array.shape = header.shape;
  const auto count = static_cast<size_t>(element_count(header.shape));
  array.values.resize(count);
  if (header.descr == "<i4") {
    check_data_size(stream, path, header, 4);
    std::vector<int32_t> narrow(count);
    stream.read(reinterpret_cast<char*>(narrow.data()), static_cast<std::streamsize>(count * 4));
    std::copy(narrow.begin(), narrow.end(), array.values.begin());
  } else if (header.descr == "<i8") {
    check_data_size(stream, path, header, 8);
    stream.read(reinterpret_cast<char*>(array.values.data()), static_cast<std::streamsize>(count * 8));
  } else {
    TEMOE_FAIL(path.string() << ": dtype '" << header.descr << "', expected int32 ('<i4') or int64 ('<i8')");
  }
  if (!stream) TEMOE_FAIL(path.string() << ": read failed");
  return array;
}

TokenArray read_token_npy(const std::filesystem::path& path) {
  const IntegerArray array = read_integer_npy(path);
  if (array.shape.size() != 2) {
    TEMOE_FAIL(path.string() << ": tokens have shape " << shape_string(array.shape) << ", expected [batch, time]");
  }
  TokenArray tokens;
  tokens.shape = array.shape;
  tokens.ids.reserve(array.values.size());
  for (const int64_t value : array.values) {
    if (value < INT32_MIN || value > INT32_MAX) TEMOE_FAIL(path.string() << ": token id " << value << " does not fit 32 bits");
    tokens.ids.push_back(static_cast<int32_t>(value));
  }
  return tokens;
}

Tensor read_float_npy(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) TEMOE_FAIL(path.string() << ": cannot open");
  const NpyHeader header = read_header(stream, path);
  if (header.descr != "<f4") TEMOE_FAIL(path.string() << ": dtype '" << header.descr << "', expected float32 ('<f4')");
  check_data_size(stream, path, header, 4);
  Tensor tensor(header.shape);
  stream.read(reinterpret_cast<char*>(tensor.data()), static_cast<std::streamsize>(tensor.numel() * 4));
  if (!stream) TEMOE_FAIL(path.string() << ": read failed");
  return tensor;
}

void write_float_npy(const std::filesystem::path& path, const Tensor& tensor) {
  const std::vector<float> values = tensor.to_vector();
  write_npy(path, "<f4", tensor.shape(), values.data(), values.size() * sizeof(float));
}

void write_token_npy(const std::filesystem::path& path, const TokenArray& tokens) {
  write_npy(path, "<i4", tokens.shape, tokens.ids.data(), tokens.ids.size() * sizeof(int32_t));
}

}  // namespace temoe
