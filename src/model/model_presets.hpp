#pragma once
// Named model sizes for `temoe init-model`, and random weights in the Hugging Face layout.
#include <filesystem>
#include <string>

#include "src/model/dtype.hpp"
#include "src/model/model_config.hpp"

namespace temoe {

// "tiny" (seconds to run, for tests) or "small" (d_model 512, 8 layers, 8 experts top-2: the
// benchmark preset), in the shape of each architecture (Qwen2-MoE with its shared expert, gpt-oss
// with biases, sinks, alternating sliding-window layers and YaRN).
ModelConfig model_preset(Architecture architecture, const std::string& preset);

// Writes config.json and random weights (seeded, reproducible) to `directory`. With
// `mxfp4_experts` (gpt-oss only) the experts are stored as MXFP4 blocks and scales, quantised from
// the values the same seed gives the dense model; everything else in `dtype`.
void write_random_model(const ModelConfig& config, uint64_t seed, const std::filesystem::path& directory, DType dtype,
                        int shards, bool mxfp4_experts = false);

}  // namespace temoe
