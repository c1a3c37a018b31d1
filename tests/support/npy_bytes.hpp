#pragma once
// The bytes of a version 1.0 .npy file with the given header dictionary, padded as numpy pads it,
// followed by `data`: for tests that write .npy files by hand (broken ones included).
#include <cstddef>
#include <string>

namespace temoe::testing {

inline std::string npy_bytes(const std::string& dictionary, const void* data, size_t data_bytes) {
  std::string header = dictionary;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(header.size() & 0xFF));
  bytes.push_back(static_cast<char>(header.size() >> 8));
  bytes += header;
  if (data_bytes > 0) bytes.append(static_cast<const char*>(data), data_bytes);
  return bytes;
}

inline std::string npy_bytes(const std::string& dictionary, const std::string& data = "") {
  return npy_bytes(dictionary, data.data(), data.size());
}

}  // namespace temoe::testing
