#pragma once
// NumPy .npy files (format 1.0/2.0/3.0, C order, little-endian): int32/int64 token arrays in,
// float32 arrays out.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace temoe {

struct TokenArray {
  Shape shape;                 // [B, T]
  std::vector<int32_t> ids;    // row-major
};

struct IntegerArray {
  Shape shape;
  std::vector<int64_t> values;  // row-major
};

// Reads an int32 or int64 array of any rank.
IntegerArray read_integer_npy(const std::filesystem::path& path);
// Reads an int32 or int64 array of rank 2; int64 values must fit int32.
TokenArray read_token_npy(const std::filesystem::path& path);
// Reads a float32 array of any rank (used by tests to read reference logits).
Tensor read_float_npy(const std::filesystem::path& path);
// Writes a float32 array atomically (no partial file on failure).
void write_float_npy(const std::filesystem::path& path, const Tensor& tensor);
// Writes an int32 array atomically.
void write_token_npy(const std::filesystem::path& path, const TokenArray& tokens);

}  // namespace temoe
