#pragma once
// The cos / sin tables of the rotary embedding (rotate-half convention), shared by the forward and
// backward kernels so that both use bit-identical angles: computed in double, as the reference
// computes its tables, then rounded once.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace temoe {

struct RotaryTable {
  int64_t half = 0;
  std::vector<float> cos;  // [time, half]
  std::vector<float> sin;  // [time, half]
};

// Rows for positions first_position, ..., first_position + time - 1 (a decode step starts past 0).
inline RotaryTable make_rotary_table(int64_t time, int64_t head_dim, double theta, int64_t first_position = 0) {
  RotaryTable table;
  table.half = head_dim / 2;
  table.cos.resize(static_cast<size_t>(time * table.half));
  table.sin.resize(table.cos.size());
  for (int64_t t = 0; t < time; ++t) {
    for (int64_t i = 0; i < table.half; ++i) {
      const double inverse_frequency = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
      const double angle = static_cast<double>(first_position + t) * inverse_frequency;
      table.cos[static_cast<size_t>(t * table.half + i)] = static_cast<float>(std::cos(angle));
      table.sin[static_cast<size_t>(t * table.half + i)] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

// The same for given inverse frequencies (YaRN's), cos and sin multiplied by `scale` before rounding.
inline RotaryTable make_rotary_table_from(int64_t time, std::span<const double> inverse_frequencies, double scale,
                                          int64_t first_position) {
  RotaryTable table;
  table.half = static_cast<int64_t>(inverse_frequencies.size());
  table.cos.resize(static_cast<size_t>(time * table.half));
  table.sin.resize(table.cos.size());
  for (int64_t t = 0; t < time; ++t) {
    for (int64_t i = 0; i < table.half; ++i) {
      const double angle = static_cast<double>(first_position + t) * inverse_frequencies[static_cast<size_t>(i)];
      table.cos[static_cast<size_t>(t * table.half + i)] = static_cast<float>(scale * std::cos(angle));
      table.sin[static_cast<size_t>(t * table.half + i)] = static_cast<float>(scale * std::sin(angle));
    }
  }
  return table;
}

}  // namespace temoe
