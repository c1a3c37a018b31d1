// MXFP4 (src/model/mxfp4.hpp): the E2M1 code table, nibble order and E8M0 scales of a hand-made
// block, and quantisation that is exact for representable values and nearest otherwise.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/error.hpp"
#include "src/model/mxfp4.hpp"

namespace temoe {
namespace {

TEST(Mxfp4, CodesAreTheSixteenE2M1Numbers) {
  const float expected[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (uint8_t code = 0; code < 16; ++code) EXPECT_EQ(fp4_e2m1_value(code), expected[code]) << int(code);
  EXPECT_TRUE(std::signbit(fp4_e2m1_value(8)));
}

TEST(Mxfp4, LowNibbleIsTheEvenValueAndTheScaleIsAPowerOfTwo) {
  // One row of 32 values: byte i holds values 2i (low nibble) and 2i + 1 (high nibble).
  std::vector<uint8_t> blocks(16, 0);
  blocks[0] = 0x72;   // value 0 = code 2 (1.0), value 1 = code 7 (6.0)
  blocks[15] = 0xA9;  // value 30 = code 9 (-0.5), value 31 = code 10 (-1.0)
  const std::vector<uint8_t> scales = {127 + 3};  // x 8
  std::vector<float> out(32);
  dequantize_mxfp4(blocks, scales, 1, 32, out.data());
  EXPECT_EQ(out[0], 8.0f);
  EXPECT_EQ(out[1], 48.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[30], -4.0f);
  EXPECT_EQ(out[31], -8.0f);
  EXPECT_THROW(dequantize_mxfp4(blocks, scales, 1, 64, out.data()), Error);  // 2 blocks expected
}

TEST(Mxfp4, QuantisationIsExactForRepresentableValuesAndNearestOtherwise) {
  std::vector<float> values(64);
  for (int i = 0; i < 32; ++i) values[static_cast<size_t>(i)] = fp4_e2m1_value(static_cast<uint8_t>(i % 16)) * 0.25f;
  for (int i = 32; i < 64; ++i) values[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i - 48);
  const Mxfp4Matrix matrix = quantize_mxfp4(values, 2, 32);
  ASSERT_EQ(matrix.blocks.size(), 32u);
  ASSERT_EQ(matrix.scales.size(), 2u);
  EXPECT_EQ(matrix.scales[0], 127 - 2);  // largest 6 x 0.25 = 1.5 fits 6 x 2^-2
  std::vector<float> back(64);
  dequantize_mxfp4(matrix.blocks, matrix.scales, 2, 32, back.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(back[static_cast<size_t>(i)], values[static_cast<size_t>(i)]) << i;
  // Second block: largest |x| 1.6 -> scale 2^-1 (6 x 0.5 = 3 >= 1.6); every value within half a step.
  EXPECT_EQ(matrix.scales[1], 127 - 1);
  for (int i = 32; i < 64; ++i) EXPECT_LE(std::fabs(back[static_cast<size_t>(i)] - values[static_cast<size_t>(i)]), 0.5f) << i;
}

}  // namespace
}  // namespace temoe
