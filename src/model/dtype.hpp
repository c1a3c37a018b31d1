#pragma once
// Storage dtypes of safetensors weights, and their conversion to the fp32 the model computes in.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace temoe {

// u8: raw bytes (gpt-oss's MXFP4 blocks and scales); as floats, the byte values 0 .. 255.
enum class DType { f32, f16, bf16, u8 };

std::optional<DType> parse_dtype(const std::string& name);  // "F32", "F16", "BF16", "U8"
std::string to_string(DType dtype);
size_t dtype_size(DType dtype);

// Converts `count` little-endian values of `dtype` at `source` into fp32.
void convert_to_float(DType dtype, const void* source, float* destination, size_t count);
// Converts fp32 to `dtype` with round-to-nearest-even (BF16, F16) for writing checkpoints.
void convert_from_float(DType dtype, const float* source, void* destination, size_t count);

float bfloat16_to_float(uint16_t bits);
uint16_t float_to_bfloat16(float value);
float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);

}  // namespace temoe
