// The expert-parallel forward under mpirun equals the single-process forward: sequences split over
// all ranks (some ranks get none), experts split over the expert-parallel group.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "parallel/mpi_communicator.hpp"
#include "parallel/process_grid.hpp"
#include "src/io/npy_file.hpp"
#include "src/model/expert_parallel_experts.hpp"
#include "src/model/moe_transformer.hpp"
#include "tests/mpi/mpi_test_support.hpp"
#include "tests/support/chunked_decode.hpp"
#include "tests/support/numeric_bounds.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

// Logits of all sequences, computed on the grid and gathered on every rank.
std::vector<float> grid_forward(const std::filesystem::path& directory, const TokenArray& tokens, int ep_size,
                                MpiCommunicator& world) {
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  ProcessGrid grid(world, ep_size, config.num_experts);
  const SafetensorsCheckpoint checkpoint(directory);
  const int64_t per_rank = grid.experts_per_rank();
  const ModelWeights weights = load_model_weights(checkpoint, config, {grid.ep_rank() * per_rank, per_rank});
  auto backend = make_backend(Device::cpu);
  TokenDispatcher dispatcher(grid.expert_parallel(), ExpertPlacement::contiguous(config.num_experts, grid.shape().ep_size));
  ExpertParallelExperts experts(*backend, weights, dispatcher);
  MoeTransformer model(config, weights, *backend, experts);
  const int64_t batch = tokens.shape[0], time = tokens.shape[1];
  const int64_t first = batch * world.rank() / world.size(), last = batch * (world.rank() + 1) / world.size();
  const Tensor logits = model.forward(std::span<const int32_t>(tokens.ids.data() + first * time,
                                                               static_cast<size_t>((last - first) * time)),
                                      last - first, time);
  // Every expert-parallel rank with no tokens must still have joined each layer's exchange.
  EXPECT_EQ(dispatcher.statistics().layer_calls, config.moe_layer_count());
  const auto mine = logits.to_vector();
  auto gathered = world.gather_v(std::as_bytes(std::span<const float>(mine)), 0);
  gathered.resize(static_cast<size_t>(batch * time * config.vocab_size) * 4);
  world.broadcast(gathered, 0);
  std::vector<float> all(gathered.size() / 4);
  std::memcpy(all.data(), gathered.data(), gathered.size());
  return all;
}

std::vector<float> single_process_forward(const std::filesystem::path& directory, const TokenArray& tokens) {
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const SafetensorsCheckpoint checkpoint(directory);
  const ModelWeights weights = load_model_weights(checkpoint, config, {0, config.num_experts});
  auto backend = make_backend(Device::cpu);
  LocalExperts experts(*backend, weights);
  MoeTransformer model(config, weights, *backend, experts);
  return model.forward(tokens.ids, tokens.shape[0], tokens.shape[1]).to_vector();
}

class DistributedForward : public ::testing::TestWithParam<std::string> {};

TEST_P(DistributedForward, EqualsSingleProcessForEveryEpSize) {
  MpiCommunicator world;
  const auto directory = kFixtures / GetParam();
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  // The fixture's two sequences repeated, so that 4 ranks all own tokens in one run and not in another.
  const TokenArray tokens = read_token_npy(directory / "tokens.npy");
  const auto reference = single_process_forward(directory, tokens);
  const Tensor expected = read_float_npy(directory / "logits.npy");
  for (int ep = 1; ep <= world.size(); ++ep) {
    if (world.size() % ep != 0 || config.num_experts % ep != 0) continue;
    const auto logits = grid_forward(directory, tokens, ep, world);
    ASSERT_EQ(logits.size(), reference.size());
    // Another world size gives GEMMs of other row counts, which the BLAS may sum in another order:
    // the logits agree to the reassociation bound of this model's forward (numeric_bounds.hpp),
    // relative to the largest |logit|, not bit for bit.
    const double bound = testing::forward_reassociation_bound(testing::forward_shape(config, tokens.shape[1]));
    double difference = 0, scale = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      difference = std::max(difference, std::fabs(double(logits[i]) - reference[i]));
      scale = std::max(scale, std::fabs(double(reference[i])));
    }
    EXPECT_LE(difference / scale, bound) << "ep " << ep << " of " << world.size() << " ranks";
    // And the independent PyTorch reference (float64), within 1e-4 of the largest |logit|.
    double reference_difference = 0, reference_scale = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      reference_difference = std::max(reference_difference, std::fabs(double(logits[i]) - expected.data()[i]));
      reference_scale = std::max(reference_scale, std::fabs(double(expected.data()[i])));
    }
    EXPECT_LE(reference_difference / reference_scale, 1e-4) << "ep " << ep << " against logits.npy";
    if (world.rank() == 0) {
      std::printf("[ measured ] %s, %d ranks, ep %d: logits differ by %.3g of the largest (bound %.3g), "
                  "%.3g from the PyTorch reference\n",
                  GetParam().c_str(), world.size(), ep, difference / scale, bound, reference_difference / reference_scale);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DistributedForward,
                         ::testing::Values("mixtral_f32", "olmoe_f32_sharded", "qwen2_moe_f32_sharded", "qwen2_moe_bf16",
                                           "qwen3_moe_f32", "qwen3_moe_bf16_sharded", "gpt_oss_f32", "gpt_oss_bf16_sharded",
                                           "gpt_oss_mxfp4"));

// Decoding with a KV cache on the grid (a prefill of 3 positions, then one per step, experts split
// over the expert-parallel group, sequences over the ranks): the reference's logits within 1e-4, so
// the sliding window and the sinks hold in expert-parallel decode too.
TEST_P(DistributedForward, DecodeWithKvCacheMatchesTheReferenceForEveryEpSize) {
  MpiCommunicator world;
  const auto directory = kFixtures / GetParam();
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const TokenArray tokens = read_token_npy(directory / "tokens.npy");
  const Tensor expected = read_float_npy(directory / "logits.npy");
  const int64_t batch = tokens.shape[0], time = tokens.shape[1], vocabulary = config.vocab_size;
  for (int ep = 1; ep <= world.size(); ++ep) {
    if (world.size() % ep != 0 || config.num_experts % ep != 0) continue;
    ProcessGrid grid(world, ep, config.num_experts);
    const SafetensorsCheckpoint checkpoint(directory);
    const int64_t per_rank = grid.experts_per_rank();
    const ModelWeights weights = load_model_weights(checkpoint, config, {grid.ep_rank() * per_rank, per_rank});
    auto backend = make_backend(Device::cpu);
    TokenDispatcher dispatcher(grid.expert_parallel(), ExpertPlacement::contiguous(config.num_experts, ep));
    ExpertParallelExperts experts(*backend, weights, dispatcher);
    MoeTransformer model(config, weights, *backend, experts);
    const int64_t first_sequence = batch * world.rank() / world.size();
    const int64_t mine = batch * (world.rank() + 1) / world.size() - first_sequence;
    const std::vector<float> decoded = testing::decode_with_cache(
        model, config, std::span<const int32_t>(tokens.ids).subspan(static_cast<size_t>(first_sequence * time)), mine, time);
    double difference = 0, scale = 0;
    for (size_t i = 0; i < decoded.size(); ++i) {
      const double reference = expected.data()[first_sequence * time * vocabulary + static_cast<int64_t>(i)];
      difference = std::max(difference, std::fabs(double(decoded[i]) - reference));
    }
    for (int64_t i = 0; i < expected.numel(); ++i) scale = std::max(scale, std::fabs(double(expected.data()[i])));
    // The largest error over the ranks: non-negative doubles order like their bit patterns.
    int64_t worst_bits = std::bit_cast<int64_t>(difference / scale);
    world.all_reduce_max(std::span<int64_t>(&worst_bits, 1));
    const double worst = std::bit_cast<double>(worst_bits);
    EXPECT_LE(worst, 1e-4) << "ep " << ep;
    if (world.rank() == 0) {
      std::printf("[ measured ] %s, %d ranks, ep %d, decode: %.3g from the PyTorch reference\n", GetParam().c_str(),
                  world.size(), ep, worst);
    }
  }
}

TEST(ProcessGridUnderMpi, SplitsIntoExpertAndDataParallelGroups) {
  MpiCommunicator world;
  for (int ep = 1; ep <= world.size(); ++ep) {
    if (world.size() % ep) continue;
    ProcessGrid grid(world, ep, 8);
    EXPECT_EQ(grid.expert_parallel().size(), ep);
    EXPECT_EQ(grid.data_parallel().size(), world.size() / ep);
    EXPECT_EQ(grid.expert_parallel().rank(), world.rank() % ep);
    EXPECT_EQ(grid.data_parallel().rank(), world.rank() / ep);
  }
}

}  // namespace
}  // namespace temoe
