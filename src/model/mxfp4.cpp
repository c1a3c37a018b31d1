#include "src/model/mxfp4.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "src/core/error.hpp"

namespace temoe {

namespace {

constexpr int64_t kBlock = 32;
constexpr std::array<float, 8> kMagnitudes = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

uint8_t nearest_code(float value) {
  const float magnitude = std::fabs(value);
  uint8_t best = 0;
  for (uint8_t code = 1; code < kMagnitudes.size(); ++code) {
    if (std::fabs(kMagnitudes[code] - magnitude) < std::fabs(kMagnitudes[best] - magnitude)) best = code;
  }
  return static_cast<uint8_t>(best | (value < 0 && best != 0 ? 8 : 0));
}

}  // namespace

float fp4_e2m1_value(uint8_t code) {
  const float magnitude = kMagnitudes[code & 7];
  return (code & 8) ? -magnitude : magnitude;
}

void dequantize_mxfp4(std::span<const uint8_t> blocks, std::span<const uint8_t> scales, int64_t rows, int64_t columns,
                      float* out) {
  TEMOE_CHECK(columns % kBlock == 0, "MXFP4: " << columns << " columns are not a multiple of " << kBlock);
  const int64_t blocks_per_row = columns / kBlock;
  TEMOE_CHECK(static_cast<int64_t>(scales.size()) == rows * blocks_per_row &&
                  static_cast<int64_t>(blocks.size()) == rows * blocks_per_row * (kBlock / 2),
              "MXFP4: " << blocks.size() << " block bytes and " << scales.size() << " scales for a " << rows << " x "
                        << columns << " matrix");
  for (int64_t block = 0; block < rows * blocks_per_row; ++block) {
    const int exponent = static_cast<int>(scales[static_cast<size_t>(block)]) - 127;
    const uint8_t* codes = blocks.data() + block * (kBlock / 2);
    float* values = out + block * kBlock;
    for (int64_t i = 0; i < kBlock / 2; ++i) {
      values[2 * i] = std::ldexp(fp4_e2m1_value(codes[i] & 0x0F), exponent);
      values[2 * i + 1] = std::ldexp(fp4_e2m1_value(static_cast<uint8_t>(codes[i] >> 4)), exponent);
    }
  }
}

Mxfp4Matrix quantize_mxfp4(std::span<const float> values, int64_t rows, int64_t columns) {
  TEMOE_CHECK(columns % kBlock == 0, "MXFP4: " << columns << " columns are not a multiple of " << kBlock);
  TEMOE_CHECK(static_cast<int64_t>(values.size()) == rows * columns, "MXFP4: " << values.size() << " values for "
                                                                               << rows << " x " << columns);
  const int64_t block_count = rows * columns / kBlock;
  Mxfp4Matrix matrix{std::vector<uint8_t>(static_cast<size_t>(block_count * kBlock / 2)),
                     std::vector<uint8_t>(static_cast<size_t>(block_count))};
  for (int64_t block = 0; block < block_count; ++block) {
    const float* source = values.data() + block * kBlock;
    float largest = 0.0f;
    for (int64_t i = 0; i < kBlock; ++i) largest = std::max(largest, std::fabs(source[i]));
    int exponent = largest > 0.0f ? static_cast<int>(std::ceil(std::log2(largest / 6.0f))) : -127;
    exponent = std::clamp(exponent, -127, 127);
    matrix.scales[static_cast<size_t>(block)] = static_cast<uint8_t>(exponent + 127);
    for (int64_t i = 0; i < kBlock / 2; ++i) {
      const uint8_t low = nearest_code(std::ldexp(source[2 * i], -exponent));
      const uint8_t high = nearest_code(std::ldexp(source[2 * i + 1], -exponent));
      matrix.blocks[static_cast<size_t>(block * kBlock / 2 + i)] = static_cast<uint8_t>(low | (high << 4));
    }
  }
  return matrix;
}

}  // namespace temoe
