// The forward against the independent PyTorch reference (tests/reference/, fixtures made by
// make_fixtures.py in float64 from the stored weights): every architecture (Mixtral, OLMoE,
// Qwen2-MoE, Qwen3-MoE, gpt-oss), B = 2, sharded and single-file checkpoints, F32, BF16 and MXFP4
// weights; the whole sequence at once and decoded position by position with a KV cache.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>

#include <cstdio>

#include "src/io/npy_file.hpp"
#include "src/model/key_value_cache.hpp"
#include "src/model/moe_transformer.hpp"
#include "tests/support/chunked_decode.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

class ReferenceLogits : public ::testing::TestWithParam<std::string> {};

// max |ours - reference| / max |reference|.
double relative_error(const std::vector<float>& ours, const Tensor& reference) {
  double max_difference = 0, max_reference = 0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    max_difference = std::max(max_difference, std::fabs(double(ours[static_cast<size_t>(i)]) - reference.data()[i]));
    max_reference = std::max(max_reference, std::fabs(double(reference.data()[i])));
  }
  return max_difference / max_reference;
}

// A fixture's model on one rank, its tokens and the reference logits.
struct FixtureModel {
  ModelConfig config;
  SafetensorsCheckpoint checkpoint;
  ModelWeights weights;
  std::unique_ptr<Backend> backend = make_backend(Device::cpu);
  LocalExperts experts;
  MoeTransformer model;
  TokenArray tokens;
  Tensor expected;

  explicit FixtureModel(const std::filesystem::path& directory)
      : config(ModelConfig::from_file(directory / "config.json")),
        checkpoint(directory),
        weights(load_model_weights(checkpoint, config, {0, config.num_experts})),
        experts(*backend, weights),
        model(config, weights, *backend, experts),
        tokens(read_token_npy(directory / "tokens.npy")),
        expected(read_float_npy(directory / "logits.npy")) {}
};

TEST_P(ReferenceLogits, MatchPyTorchWithin1e4Relative) {
  const auto directory = kFixtures / GetParam();
  FixtureModel fixture(directory);
  const ModelConfig& config = fixture.config;
  const TokenArray& tokens = fixture.tokens;
  ASSERT_GT(tokens.shape[0], 1) << "the fixture must cover B > 1";
  ForwardRecord record;
  const Tensor logits = fixture.model.forward(tokens.ids, tokens.shape[0], tokens.shape[1], &record);
  ASSERT_EQ(logits.shape(), fixture.expected.shape());

  // Relative to the logits' scale: max |ours - reference| / max |reference| <= 1e-4.
  const double error = relative_error(logits.to_vector(), fixture.expected);
  EXPECT_LE(error, 1e-4);
  std::printf("[ measured ] %s whole sequence: max relative logit error %.3g\n", GetParam().c_str(), error);

  // The routing decisions themselves: router_topk.npy is int32 [layers, B, T, k].
  const IntegerArray chosen = read_integer_npy(directory / "router_topk.npy");
  ASSERT_EQ(chosen.shape, (Shape{config.num_layers, tokens.shape[0], tokens.shape[1], config.top_k}));
  ASSERT_EQ(record.layers.size(), static_cast<size_t>(config.num_layers));
  const size_t per_layer = static_cast<size_t>(tokens.shape[0] * tokens.shape[1] * config.top_k);
  for (size_t layer = 0; layer < record.layers.size(); ++layer) {
    if (!config.is_moe_layer(static_cast<int64_t>(layer))) {
      EXPECT_EQ(chosen.values[layer * per_layer], -1) << "the reference marks dense layer " << layer;
      continue;
    }
    for (size_t i = 0; i < per_layer; ++i) {
      ASSERT_EQ(record.layers[layer].chosen_experts[i], chosen.values[layer * per_layer + i])
          << "layer " << layer << " slot " << i;
    }
  }
}

// Position by position with a KV cache (a prefill of 3, then one position per step): the same
// logits, so the cache honours gpt-oss's sliding window and sinks as the whole forward does.
TEST_P(ReferenceLogits, DecodeWithKvCacheMatchesPyTorch) {
  FixtureModel fixture(kFixtures / GetParam());
  const ModelConfig& config = fixture.config;
  MoeTransformer& model = fixture.model;
  const TokenArray& tokens = fixture.tokens;
  const Tensor& expected = fixture.expected;
  const std::vector<float> decoded =
      testing::decode_with_cache(model, config, tokens.ids, tokens.shape[0], tokens.shape[1]);
  const double error = relative_error(decoded, expected);
  EXPECT_LE(error, 1e-4);
  std::printf("[ measured ] %s decode: max relative logit error %.3g\n", GetParam().c_str(), error);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceLogits,
                         ::testing::Values("mixtral_f32", "mixtral_bf16_sharded", "olmoe_f32_sharded", "olmoe_bf16_tied",
                                           "qwen2_moe_f32_sharded", "qwen2_moe_bf16", "qwen3_moe_f32",
                                           "qwen3_moe_bf16_sharded", "gpt_oss_f32", "gpt_oss_bf16_sharded",
                                           "gpt_oss_mxfp4"));

}  // namespace
}  // namespace temoe
