#pragma once
// MXFP4 (OCP microscaling, as gpt-oss stores its experts): each row of a matrix is cut into blocks
// of 32 values; a block is 16 bytes of FP4 E2M1 codes (two per byte, the low nibble first) and one
// E8M0 scale byte (value = code's number x 2^(scale - 127)).
#include <cstdint>
#include <span>
#include <vector>

namespace temoe {

// The 16 numbers an E2M1 code stands for: codes 0-7 are +0, 0.5, 1, 1.5, 2, 3, 4, 6; 8-15 the same negated.
float fp4_e2m1_value(uint8_t code);

// blocks: rows x (columns / 32) x 16 bytes; scales: rows x (columns / 32) bytes; out: rows x columns
// floats (row-major). columns must be a multiple of 32.
void dequantize_mxfp4(std::span<const uint8_t> blocks, std::span<const uint8_t> scales, int64_t rows, int64_t columns,
                      float* out);

struct Mxfp4Matrix {
  std::vector<uint8_t> blocks;  // rows x (columns / 32) x 16
  std::vector<uint8_t> scales;  // rows x (columns / 32)
};

// The nearest MXFP4 encoding of values [rows, columns]: per block the smallest power-of-two scale
// that brings its largest magnitude within 6, then each value rounded to the nearest E2M1 number.
Mxfp4Matrix quantize_mxfp4(std::span<const float> values, int64_t rows, int64_t columns);

}  // namespace temoe
