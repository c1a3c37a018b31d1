// The forward against the independent PyTorch reference (tests/reference/, fixtures made by
// make_fixtures.py in float64 from the stored weights): both architectures, B = 2, sharded and
// single-file checkpoints, F32 and BF16 weights.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/io/npy_file.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

class ReferenceLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceLogits, MatchPyTorchWithin1e4Relative) {
  const auto directory = kFixtures / GetParam();
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const SafetensorsCheckpoint checkpoint(directory);
  const ModelWeights weights = load_model_weights(checkpoint, config, {0, config.num_experts});
  auto backend = make_backend(Device::cpu);
  LocalExperts experts(*backend, weights);
  MoeTransformer model(config, weights, *backend, experts);

  const TokenArray tokens = read_token_npy(directory / "tokens.npy");
  const Tensor expected = read_float_npy(directory / "logits.npy");
  ASSERT_GT(tokens.shape[0], 1) << "the fixture must cover B > 1";
  ForwardRecord record;
  const Tensor logits = model.forward(tokens.ids, tokens.shape[0], tokens.shape[1], &record);
  ASSERT_EQ(logits.shape(), expected.shape());

  // Relative to the logits' scale: max |ours - reference| / max |reference| <= 1e-4.
  double max_difference = 0, max_reference = 0;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    max_difference = std::max(max_difference, std::fabs(double(logits.data()[i]) - expected.data()[i]));
    max_reference = std::max(max_reference, std::fabs(double(expected.data()[i])));
  }
  EXPECT_LE(max_difference / max_reference, 1e-4) << "max difference " << max_difference;

  // The routing decisions themselves: router_topk.npy is int32 [layers, B, T, k].
  const IntegerArray chosen = read_integer_npy(directory / "router_topk.npy");
  ASSERT_EQ(chosen.shape, (Shape{config.num_layers, tokens.shape[0], tokens.shape[1], config.top_k}));
  ASSERT_EQ(record.layers.size(), static_cast<size_t>(config.num_layers));
  const size_t per_layer = static_cast<size_t>(tokens.shape[0] * tokens.shape[1] * config.top_k);
  for (size_t layer = 0; layer < record.layers.size(); ++layer) {
    for (size_t i = 0; i < per_layer; ++i) {
      ASSERT_EQ(record.layers[layer].chosen_experts[i], chosen.values[layer * per_layer + i])
          << "layer " << layer << " slot " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceLogits,
                         ::testing::Values("mixtral_f32", "mixtral_bf16_sharded", "olmoe_f32_sharded", "olmoe_bf16_tied"));

}  // namespace
}  // namespace temoe
