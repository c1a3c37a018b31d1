#include "src/model/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace temoe {

std::optional<DType> parse_dtype(const std::string& name) {
  if (name == "F32") return DType::f32;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  if (name == "U8") return DType::u8;
  return std::nullopt;
}

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::u8: return "U8";
  }
  return "?";
}

size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : dtype == DType::u8 ? 1 : 2; }

float bfloat16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t float_to_bfloat16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float half_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0) {
    // Zero or subnormal: value = mantissa * 2^-24.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000 | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t float_to_half(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return static_cast<uint16_t>(sign | 0x7E00);
  if (magnitude >= 65520.0f) return static_cast<uint16_t>(sign | 0x7C00);
  if (magnitude < 6.103515625e-05f) {
    // Subnormal range: round magnitude / 2^-24 to the nearest integer (ties to even).
    const float scaled = magnitude * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  uint32_t exponent = ((bits >> 23) & 0xFF) - 112;
  uint32_t mantissa = bits & 0x7FFFFF;
  const uint32_t rounding = 0xFFF + ((mantissa >> 13) & 1);
  mantissa += rounding;
  if (mantissa & 0x800000) {
    mantissa = 0;
    ++exponent;
  }
  return static_cast<uint16_t>(sign | (exponent << 10) | (mantissa >> 13));
}

void convert_to_float(DType dtype, const void* source, float* destination, size_t count) {
  const auto* bytes = static_cast<const unsigned char*>(source);
  switch (dtype) {
    case DType::f32:
      std::memcpy(destination, source, count * 4);
      return;
    case DType::bf16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        destination[i] = bfloat16_to_float(bits);
      }
      return;
    case DType::f16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        destination[i] = half_to_float(bits);
      }
      return;
    case DType::u8:
      for (size_t i = 0; i < count; ++i) destination[i] = static_cast<float>(bytes[i]);
      return;
  }
}

void convert_from_float(DType dtype, const float* source, void* destination, size_t count) {
  auto* bytes = static_cast<unsigned char*>(destination);
  switch (dtype) {
    case DType::f32:
      std::memcpy(destination, source, count * 4);
      return;
    case DType::bf16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t bits = float_to_bfloat16(source[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    case DType::f16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t bits = float_to_half(source[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    case DType::u8:
      for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<unsigned char>(std::clamp(std::nearbyint(source[i]), 0.0f, 255.0f));
      return;
  }
}

}  // namespace temoe
