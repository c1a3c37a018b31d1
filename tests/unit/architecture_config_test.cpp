// Config parsing of the newer families: gpt-oss-20b's published config.json (no weights) gives the
// published parameter counts, and every architecture's parameter count equals the sum over the
// tensors its checkpoint holds; Qwen's dense layers and gpt-oss's layer types and YaRN are read.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/model/model_initialization.hpp"
#include "src/model/model_presets.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/rotary_frequencies.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

int64_t tensor_parameters(const ModelConfig& config) {
  int64_t total = 0;
  for (const auto& [name, shape] : expected_tensors(config)) total += element_count(shape);
  return total;
}

TEST(ArchitectureConfig, GptOss20bHasThePublishedParameterCounts) {
  const ModelConfig config = ModelConfig::from_file(kFixtures / "gpt_oss_20b_config" / "config.json");
  EXPECT_EQ(config.architecture, Architecture::gpt_oss);
  EXPECT_EQ(config.num_layers, 24);
  EXPECT_EQ(config.num_experts, 32);
  EXPECT_EQ(config.gate_rule(), GateRule::top_k_softmax);
  EXPECT_TRUE(config.is_sliding_layer(0));
  EXPECT_FALSE(config.is_sliding_layer(1));
  EXPECT_EQ(config.sliding_window, 128);
  EXPECT_TRUE(config.yarn);
  EXPECT_DOUBLE_EQ(config.yarn_scaling.factor, 32.0);
  EXPECT_FALSE(config.yarn_scaling.truncate);
  // The tensors of the dequantised layout, counted one by one, are the parameter count.
  EXPECT_EQ(config.parameters_total(), tensor_parameters(config));
  // OpenAI's model card: 20.91B total, 3.61B active (the input embedding is not counted as active).
  EXPECT_NEAR(static_cast<double>(config.parameters_total()) / 1e9, 20.91, 0.01);
  EXPECT_NEAR(static_cast<double>(config.parameters_active_per_token() - config.parameters_embedding()) / 1e9, 3.61, 0.01);
  // Per rank: the dense part plus E / X experts of every layer.
  const int64_t dense = config.parameters_total() - 24 * 32 * config.parameters_per_expert();
  for (const int ep : {1, 2, 4, 8}) {
    EXPECT_EQ(resident_weight_bytes(config, 32 / ep), 4 * (dense + 24 * (32 / ep) * config.parameters_per_expert())) << ep;
  }
}

TEST(ArchitectureConfig, EveryPresetsParameterCountIsTheSumOverItsTensors) {
  for (const Architecture architecture : {Architecture::mixtral, Architecture::olmoe, Architecture::qwen2_moe,
                                          Architecture::qwen3_moe, Architecture::gpt_oss}) {
    for (const char* preset : {"tiny", "small"}) {
      const ModelConfig config = model_preset(architecture, preset);
      EXPECT_EQ(config.parameters_total(), tensor_parameters(config)) << to_string(architecture) << " " << preset;
      // to_json and back is the same model.
      const ModelConfig again = ModelConfig::from_json(config.to_json(), "round trip");
      EXPECT_EQ(again.parameters_total(), config.parameters_total()) << to_string(architecture) << " " << preset;
      EXPECT_EQ(again.gate_rule(), config.gate_rule());
      EXPECT_EQ(again.sliding_layers, config.sliding_layers);
      EXPECT_EQ(expected_tensors(again), expected_tensors(config));
    }
  }
}

TEST(ArchitectureConfig, QwenDenseLayersComeFromMlpOnlyLayersAndTheSparseStep) {
  nlohmann::json json = model_preset(Architecture::qwen2_moe, "tiny").to_json();
  json["num_hidden_layers"] = 6;
  json["decoder_sparse_step"] = 2;  // layers 1, 3, 5 are MoE ...
  json["mlp_only_layers"] = {3};    // ... but 3 is dense
  const ModelConfig config = ModelConfig::from_json(json, "qwen");
  EXPECT_EQ(config.dense_layers, (std::vector<uint8_t>{1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(config.moe_layer_count(), 2);
  EXPECT_EQ(config.parameters_total(), tensor_parameters(config));
  const auto tensors = expected_tensors(config);
  EXPECT_TRUE(tensors.count("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_FALSE(tensors.count("model.layers.0.mlp.gate.weight"));
  EXPECT_TRUE(tensors.count("model.layers.1.mlp.shared_expert_gate.weight"));
  json["mlp_only_layers"] = {0, 1, 2, 3, 4, 5};
  EXPECT_THROW(ModelConfig::from_json(json, "qwen"), Error);
}

TEST(ArchitectureConfig, YarnKeepsFastDimensionsAndInterpolatesSlowOnes) {
  const ModelConfig config = ModelConfig::from_file(kFixtures / "gpt_oss_20b_config" / "config.json");
  const RotaryFrequencies yarn = rotary_frequencies(config);
  ASSERT_EQ(yarn.inverse_frequencies.size(), 32u);
  EXPECT_NEAR(yarn.scale, 0.1 * std::log(32.0) + 1.0, 1e-12);
  const auto plain = [&](int i) { return std::pow(150000.0, -2.0 * i / 64.0); };
  EXPECT_DOUBLE_EQ(yarn.inverse_frequencies[0], plain(0));              // extrapolated (unchanged)
  EXPECT_NEAR(yarn.inverse_frequencies[31], plain(31) / 32.0, 1e-18);  // interpolated by the factor
  for (size_t i = 1; i < yarn.inverse_frequencies.size(); ++i) {
    EXPECT_LT(yarn.inverse_frequencies[i], yarn.inverse_frequencies[i - 1]);
  }
}

// A rank holding experts {1, 2} of gpt-oss's fused tensors reads exactly its rows of them (MXFP4
// blocks and scales, or F32), plus every dense tensor whole.
TEST(ArchitectureLoading, AGptOssRankReadsOnlyItsExpertsRowsOfTheFusedTensors) {
  for (const char* fixture : {"gpt_oss_mxfp4", "gpt_oss_f32"}) {
    const auto directory = kFixtures / fixture;
    const ModelConfig config = ModelConfig::from_file(directory / "config.json");
    const SafetensorsCheckpoint checkpoint(directory);
    uint64_t expected = 0;
    for (const auto& name : checkpoint.tensor_names()) {
      const uint64_t bytes = checkpoint.entry(name).byte_count;
      expected += name.find(".mlp.experts.") != std::string::npos ? bytes / 4 * 2 : bytes;  // 2 of the 4 experts
    }
    const ModelWeights weights = load_model_weights(checkpoint, config, ExpertSet::of({1, 2}));
    EXPECT_EQ(checkpoint.bytes_read(), expected) << fixture;
    ASSERT_EQ(weights.layers[0].experts.size(), 2u);
    EXPECT_EQ(weights.layers[0].experts[0].gate_proj.shape(), (Shape{config.expert_ffn_size, config.hidden_size}));
    EXPECT_EQ(weights.layers[0].experts[0].down_bias.shape(), (Shape{config.hidden_size}));
  }
}

TEST(ArchitectureConfig, PretrainingRefusesTheFrozenOnlyFamiliesNamingThem) {
  for (const Architecture architecture : {Architecture::qwen2_moe, Architecture::qwen3_moe, Architecture::gpt_oss}) {
    const ModelConfig config = model_preset(architecture, "tiny");
    try {
      initialize_model_weights(config, {0, config.num_experts}, {});
      FAIL() << to_string(architecture) << " was initialised for pretraining";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(to_string(architecture)), std::string::npos) << error.what();
    }
  }
}

}  // namespace
}  // namespace temoe
