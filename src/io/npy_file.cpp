#include "src/io/npy_file.hpp"

#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "src/core/checked_size.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"

namespace temoe {

namespace {

struct NpyHeader {
  std::string descr;
  Shape shape;
  std::streamoff data_offset = 0;
};

constexpr const char* kSpace = " \t\r\n";

// Where the value of `key` starts in the header's Python dict literal (after "'key'", blanks, ':'
// and blanks), or npos. A plain search, not std::regex: libstdc++'s regex recurses once per
// character matched, so a long corrupt header would overflow the stack.
size_t value_start(const std::string& header, const char* key) {
  const std::string quoted = std::string("'") + key + "'";
  const size_t found = header.find(quoted);
  if (found == std::string::npos) return found;
  const size_t colon = header.find_first_not_of(kSpace, found + quoted.size());
  if (colon == std::string::npos || header[colon] != ':') return std::string::npos;
  return header.find_first_not_of(kSpace, colon + 1);
}

// The value of `key` from its `open` character up to and including the next `close` character.
std::string delimited_value(const std::string& header, const char* key, char open, char close,
                            const std::filesystem::path& path) {
  const size_t begin = value_start(header, key);
  const size_t end = begin == std::string::npos || header[begin] != open ? std::string::npos : header.find(close, begin + 1);
  if (end == std::string::npos) {
    TEMOE_FAIL(path.string() << ": .npy header has no '" << key << "' (expected '" << key << "': " << open << "..." << close
                             << ")");
  }
  return header.substr(begin, end - begin + 1);
}

// "(2, 3)" or "(5,)" or "()" into extents; each must be a non-negative decimal integer.
Shape parse_extents(const std::string& text, const std::filesystem::path& path) {
  Shape shape;
  std::stringstream extents(text.substr(1, text.size() - 2));
  std::string item;
  while (std::getline(extents, item, ',')) {
    const size_t first = item.find_first_not_of(kSpace);
    if (first == std::string::npos) continue;
    const size_t last = item.find_last_not_of(kSpace);
    int64_t extent = -1;
    const char* begin = item.data() + first;
    const char* end = item.data() + last + 1;
    const auto [stop, error] = std::from_chars(begin, end, extent);
    if (error != std::errc() || stop != end || extent < 0) {
      TEMOE_FAIL(path.string() << ": .npy header has shape " << text << "; extent '" << std::string(begin, end)
                               << "' is not an integer in [0, " << std::numeric_limits<int64_t>::max() << "]");
    }
    shape.push_back(extent);
  }
  return shape;
}

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
  const std::string descr = delimited_value(header, "descr", '\'', '\'', path);
  parsed.descr = descr.substr(1, descr.size() - 2);
  const size_t fortran = value_start(header, "fortran_order");
  if (fortran != std::string::npos && header.compare(fortran, 4, "True") == 0) {
    TEMOE_FAIL(path.string() << ": Fortran-ordered arrays are not supported; save a C-ordered array");
  }
  parsed.shape = parse_extents(delimited_value(header, "shape", '(', ')', path), path);
  return parsed;
}

// Bytes of data the header's shape needs, refused before anything is allocated when the file does
// not hold them (a 100-byte file must not be able to ask for 160 GB).
size_t check_data_size(std::ifstream& stream, const std::filesystem::path& path, const NpyHeader& header, size_t item) {
  const int64_t needed = checked_bytes(header.shape, static_cast<int64_t>(item), path.string());
  stream.seekg(0, std::ios::end);
  const std::streamoff end = stream.tellg();
  const auto available = end > header.data_offset ? static_cast<uint64_t>(end - header.data_offset) : uint64_t{0};
  if (available < static_cast<uint64_t>(needed)) {
    TEMOE_FAIL(path.string() << ": shape " << shape_string(header.shape) << " needs " << needed << " data bytes, the file has "
                             << available << " (truncated?)");
  }
  stream.seekg(header.data_offset);
  return static_cast<size_t>(needed) / item;
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
  if (header.descr == "<i4") {
    const size_t count = check_data_size(stream, path, header, 4);
    std::vector<int32_t> narrow(count);
    stream.read(reinterpret_cast<char*>(narrow.data()), static_cast<std::streamsize>(count * 4));
    array.values.assign(narrow.begin(), narrow.end());
  } else if (header.descr == "<i8") {
    const size_t count = check_data_size(stream, path, header, 8);
    array.values.resize(count);
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
