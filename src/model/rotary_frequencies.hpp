#pragma once
// The rotary embedding's inverse frequencies and cos / sin scale for a model: plain
// theta^(-2i/hd), or YaRN's blend of interpolated and extrapolated frequencies (Peng et al. 2023,
// as Hugging Face's rope utilities compute it; gpt-oss uses it).
#include <vector>

#include "src/model/model_config.hpp"

namespace temoe {

struct RotaryFrequencies {
  std::vector<double> inverse_frequencies;  // head_dim / 2
  double scale = 1.0;                        // multiplies cos and sin
};

RotaryFrequencies rotary_frequencies(const ModelConfig& config);

}  // namespace temoe
