// The expert-parallel backward under mpirun equals the single-process backward: sequences split
// over all ranks (some ranks get none), experts over the expert-parallel group; after the gradient
// all-reduce (dense over the world, experts over the data-parallel group) every rank's gradients
// equal those of one process computing the whole batch, within 1e-5 relative (OpenBLAS rounds a
// row differently depending on its position in the GEMM, so not bit for bit), and the loss too.
#include <gtest/gtest.h>

#include <cmath>

#include "parallel/mpi_communicator.hpp"
#include "parallel/process_grid.hpp"
#include "src/core/counter_random.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/training/gradient_reduction.hpp"
#include "src/training/training_step.hpp"
#include "tests/mpi/mpi_test_support.hpp"
#include "tests/support/numeric_bounds.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;
constexpr int64_t kBatch = 3, kTime = 10;
constexpr double kCoefficient = 0.1;

struct Batch {
  std::vector<int32_t> inputs, targets;  // [kBatch, kTime]
};

Batch make_batch(int64_t vocab) {
  Batch batch;
  CounterRandom random(17, {});
  for (int64_t i = 0; i < kBatch * kTime; ++i) {
    batch.inputs.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocab)));
    batch.targets.push_back(static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(vocab)));
  }
  return batch;
}

struct Result {
  StepLosses losses;
  std::map<std::string, std::vector<float>> gradients;  // what this rank holds
  double norm = 0;
};

Result train_step(const std::filesystem::path& directory, const Batch& batch, MpiCommunicator* world, int ep_size) {
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const SafetensorsCheckpoint checkpoint(directory);
  std::unique_ptr<ProcessGrid> grid;
  TrainingCommunicators communicators;
  ExpertSet range{0, config.num_experts};
  if (world) {
    grid = std::make_unique<ProcessGrid>(*world, ep_size, config.num_experts);
    communicators = training_communicators(*grid);
    range = {grid->ep_rank() * grid->experts_per_rank(), grid->experts_per_rank()};
  }
  auto model = make_training_model(config, load_model_weights(checkpoint, config, range), Device::cpu, grid.get());
  const int ranks = world ? world->size() : 1, rank = world ? world->rank() : 0;
  const int64_t first = kBatch * rank / ranks, last = kBatch * (rank + 1) / ranks;
  const auto slice = [&](const std::vector<int32_t>& all) {
    return std::span<const int32_t>(all.data() + first * kTime, static_cast<size_t>((last - first) * kTime));
  };
  Result result;
  result.losses = compute_gradients(*model, communicators, slice(batch.inputs), slice(batch.targets), last - first, kTime,
                                    kBatch * kTime, {.load_balancing_coefficient = kCoefficient});
  result.norm = global_gradient_norm(model->parameters, communicators);
  for (const auto& parameter : model->parameters.all.parameters()) {
    result.gradients[parameter.name] = parameter.gradient.to_vector();
  }
  return result;
}

class ExpertParallelBackward : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertParallelBackward, EqualsSingleProcessForEveryEpSize) {
  MpiCommunicator world;
  const auto directory = kFixtures / GetParam();
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  const Batch batch = make_batch(config.vocab_size);
  const Result reference = train_step(directory, batch, nullptr, 1);
  for (int ep = 1; ep <= world.size(); ++ep) {
    if (world.size() % ep != 0 || config.num_experts % ep != 0) continue;
    const Result got = train_step(directory, batch, &world, ep);
    // The loss is a forward (other GEMM row counts, reassociated); the gradients are a forward, a
    // backward and sums over the batch's tokens split over ranks: one step of the training bound.
    // The routing counts are discrete and compared exactly (numeric_bounds.hpp).
    const testing::ForwardShape shape = testing::forward_shape(config, kTime);
    const double loss_bound = testing::forward_reassociation_bound(shape);
    const double gradient_bound = testing::training_reassociation_bound(shape, kBatch * kTime, 1);
    EXPECT_NEAR(got.losses.total, reference.losses.total, loss_bound * reference.losses.total) << "ep " << ep;
    EXPECT_EQ(got.losses.expert_fractions, reference.losses.expert_fractions) << "ep " << ep;
    EXPECT_NEAR(got.norm, reference.norm, gradient_bound * reference.norm) << "ep " << ep;
    double worst = 0.0;
    std::string worst_name;
    for (const auto& [name, gradient] : got.gradients) {
      const auto found = reference.gradients.find(name);
      ASSERT_NE(found, reference.gradients.end()) << name;
      ASSERT_EQ(found->second.size(), gradient.size()) << name;
      double difference = 0.0, scale = 0.0;
      for (size_t i = 0; i < gradient.size(); ++i) {
        difference = std::max(difference, std::fabs(double(gradient[i]) - found->second[i]));
        scale = std::max(scale, std::fabs(double(found->second[i])));
      }
      const double error = scale > 0 ? difference / scale : difference;
      if (error > worst) {
        worst = error;
        worst_name = name;
      }
    }
    // Every parameter of this rank's share was compared: dense ones and its experts.
    const int64_t expected_tensors = static_cast<int64_t>(reference.gradients.size()) -
                                     3 * config.num_layers * (config.num_experts - config.num_experts / ep);
    EXPECT_EQ(static_cast<int64_t>(got.gradients.size()), expected_tensors) << "ep " << ep;
    EXPECT_TRUE(testing::all_ranks(world, worst <= gradient_bound))
        << "ep " << ep << " of " << world.size() << " ranks: worst relative error " << worst << " in " << worst_name;
    if (world.rank() == 0) {
      std::printf("[ measured ] %s, %d ranks, ep %d: worst gradient error %.3g (%s), bound %.3g\n", GetParam().c_str(),
                  world.size(), ep, worst, worst_name.c_str(), gradient_bound);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExpertParallelBackward, ::testing::Values("mixtral_f32", "olmoe_f32_sharded"));

}  // namespace
}  // namespace temoe
