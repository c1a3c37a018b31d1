// BF16 / F16 <-> F32 conversions: every representable value survives a round trip bit for bit,
// rounding is to nearest with ties to even (checked on hand-picked bit patterns at the halfway
// points), F16 subnormals are exact, and infinities and NaNs stay what they are.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "src/model/dtype.hpp"

namespace temoe {
namespace {

float from_bits(uint32_t bits) { return std::bit_cast<float>(bits); }

bool is_bf16_nan(uint16_t bits) { return (bits & 0x7F80) == 0x7F80 && (bits & 0x007F) != 0; }
bool is_f16_nan(uint16_t bits) { return (bits & 0x7C00) == 0x7C00 && (bits & 0x03FF) != 0; }

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(parse_dtype("F32"), DType::f32);
  EXPECT_EQ(parse_dtype("F16"), DType::f16);
  EXPECT_EQ(parse_dtype("BF16"), DType::bf16);
  EXPECT_EQ(parse_dtype("I64"), std::nullopt);
  EXPECT_EQ(parse_dtype("f32"), std::nullopt);  // safetensors spells dtypes in capitals
  for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) EXPECT_EQ(parse_dtype(to_string(dtype)), dtype);
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
}

// ---------------------------------------------------------------------------------------------
// BF16: the top 16 bits of an F32.

TEST(DType, Bfloat16RoundTripOfEveryValueIsExact) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto half = static_cast<uint16_t>(bits);
    const float value = bfloat16_to_float(half);
    EXPECT_EQ(std::bit_cast<uint32_t>(value), bits << 16);
    if (is_bf16_nan(half)) {
      EXPECT_TRUE(is_bf16_nan(float_to_bfloat16(value))) << std::hex << bits;
    } else {
      ASSERT_EQ(float_to_bfloat16(value), half) << std::hex << bits;
    }
  }
}

TEST(DType, Bfloat16RoundsToNearestEven) {
  struct Case {
    uint32_t f32;
    uint16_t bf16;
  };
  const Case cases[] = {
      {0x3F800000, 0x3F80},  // 1.0
      {0x3F807FFF, 0x3F80},  // just below halfway: down
      {0x3F808000, 0x3F80},  // halfway, even below: down
      {0x3F808001, 0x3F81},  // just above halfway: up
      {0x3F818000, 0x3F82},  // halfway, odd below: up to even
      {0xBF818000, 0xBF82},  // the same, negative
      {0x3F81FFFF, 0x3F82},
      {0x7F7F8000, 0x7F80},  // halfway between the largest finite BF16 and 2^128: even is infinity
      {0x7F7F7FFF, 0x7F7F},  // below halfway: the largest finite BF16
      {0x7F7FFFFF, 0x7F80},  // FLT_MAX rounds to infinity
      {0x00000001, 0x0000},  // the smallest F32 subnormal rounds to +0
      {0x00008000, 0x0000},  // halfway to the smallest BF16 subnormal: even is 0
      {0x00018000, 0x0002},  // halfway, odd below: up
      {0x80000000, 0x8000},  // -0
  };
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_bfloat16(from_bits(c.f32)), c.bf16) << std::hex << "f32 bits 0x" << c.f32;
  }
}

TEST(DType, Bfloat16InfinityAndNan) {
  const float infinity = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_bfloat16(infinity), 0x7F80);
  EXPECT_EQ(float_to_bfloat16(-infinity), 0xFF80);
  EXPECT_TRUE(std::isinf(bfloat16_to_float(0x7F80)));
  EXPECT_TRUE(std::isnan(bfloat16_to_float(0x7FC0)));
  EXPECT_TRUE(is_bf16_nan(float_to_bfloat16(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload lies only in the low 16 bits must not turn into infinity by truncation,
  // nor round up into the next binade.
  EXPECT_TRUE(is_bf16_nan(float_to_bfloat16(from_bits(0x7F800001))));
  EXPECT_TRUE(is_bf16_nan(float_to_bfloat16(from_bits(0xFF80FFFF))));
  EXPECT_TRUE(is_bf16_nan(float_to_bfloat16(from_bits(0x7FFFFFFF))));
}

// ---------------------------------------------------------------------------------------------
// F16: 1 sign, 5 exponent, 10 mantissa bits; subnormals are multiples of 2^-24.

TEST(DType, HalfRoundTripOfEveryValueIsExact) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto half = static_cast<uint16_t>(bits);
    const float value = half_to_float(half);
    if (is_f16_nan(half)) {
      EXPECT_TRUE(std::isnan(value)) << std::hex << bits;
      EXPECT_TRUE(is_f16_nan(float_to_half(value))) << std::hex << bits;
    } else {
      ASSERT_EQ(float_to_half(value), half) << std::hex << bits << " -> " << value;
    }
  }
}

TEST(DType, HalfValuesOfKnownBitPatterns) {
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0xC000), -2.0f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);                 // the largest finite F16
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));    // the smallest normal
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));    // the smallest subnormal
  EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));  // the largest subnormal
  EXPECT_EQ(half_to_float(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(std::bit_cast<uint32_t>(half_to_float(0x8000)), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(half_to_float(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7C01)));  // the smallest NaN payload is not infinity
}

TEST(DType, HalfRoundsToNearestEven) {
  struct Case {
    float value;
    uint16_t half;
  };
  const float ulp1 = std::ldexp(1.0f, -10);  // F16 spacing just above 1
  const float sub = std::ldexp(1.0f, -24);   // F16 subnormal spacing
  const Case cases[] = {
      {1.0f + ulp1 / 2, 0x3C00},                         // halfway, even below: down
      {1.0f + ulp1 / 2 + std::ldexp(1.0f, -20), 0x3C01},  // above halfway: up
      {1.0f + 3 * ulp1 / 2, 0x3C02},                     // halfway, odd below: up to even
      {-(1.0f + 3 * ulp1 / 2), 0xBC02},
      {2047.5f, 0x6800},    // halfway between 2047 (odd mantissa) and 2048: carries into the exponent
      {2046.5f, 0x67FE},    // halfway between 2046 (even) and 2047: down
      {65519.0f, 0x7BFF},   // below halfway to 65536: the largest finite
      {65520.0f, 0x7C00},   // halfway, odd below: infinity
      {1e6f, 0x7C00},       // overflow
      {-1e6f, 0xFC00},
      // Subnormals: round the multiple of 2^-24 to even.
      {sub / 2, 0x0000},     // halfway between 0 and the smallest subnormal: 0
      {sub * 0.75f, 0x0001},
      {sub * 1.5f, 0x0002},  // halfway, odd below: up
      {sub * 2.5f, 0x0002},  // halfway, even below: down
      {-sub * 1.5f, 0x8002},
      {sub * 1023.5f, 0x0400},  // between the largest subnormal and the smallest normal: even is the normal
      {std::ldexp(1.0f, -14) - std::ldexp(1.0f, -30), 0x0400},
      {1e-10f, 0x0000},
      {-1e-10f, 0x8000},    // underflow keeps the sign
      {-0.0f, 0x8000},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_half(c.value), c.half) << c.value << " (f32 bits 0x" << std::hex << std::bit_cast<uint32_t>(c.value) << ")";
  }
}

TEST(DType, HalfInfinityAndNan) {
  const float infinity = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_half(infinity), 0x7C00);
  EXPECT_EQ(float_to_half(-infinity), 0xFC00);
  EXPECT_TRUE(is_f16_nan(float_to_half(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(is_f16_nan(float_to_half(from_bits(0x7F800001))));  // payload only in bits F16 drops
  EXPECT_TRUE(is_f16_nan(float_to_half(from_bits(0xFFC00000))));
}

// ---------------------------------------------------------------------------------------------
// The array conversions read and write little-endian bytes, as safetensors stores them.

TEST(DType, ArrayConversionsUseLittleEndianBytes) {
  const std::vector<float> values = {1.0f, -2.5f, 0.0f, 65504.0f};
  std::vector<unsigned char> bytes(values.size() * 2);
  convert_from_float(DType::bf16, values.data(), bytes.data(), values.size());
  EXPECT_EQ(bytes[0], 0x80);
  EXPECT_EQ(bytes[1], 0x3F);
  std::vector<float> back(values.size());
  convert_to_float(DType::bf16, bytes.data(), back.data(), values.size());
  EXPECT_EQ(back, (std::vector<float>{1.0f, -2.5f, 0.0f, 65536.0f}));  // 65504 is not a BF16 value

  convert_from_float(DType::f16, values.data(), bytes.data(), values.size());
  EXPECT_EQ(bytes[0], 0x00);
  EXPECT_EQ(bytes[1], 0x3C);
  convert_to_float(DType::f16, bytes.data(), back.data(), values.size());
  EXPECT_EQ(back, values);

  std::vector<unsigned char> wide(values.size() * 4);
  convert_from_float(DType::f32, values.data(), wide.data(), values.size());
  EXPECT_EQ(wide[3], 0x3F);
  EXPECT_EQ(wide[2], 0x80);
  convert_to_float(DType::f32, wide.data(), back.data(), values.size());
  EXPECT_EQ(back, values);
}

}  // namespace
}  // namespace temoe
