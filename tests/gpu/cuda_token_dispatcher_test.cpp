// The token dispatcher on device buffers (NCCL grouped send/recv) against the same dispatch on host
// buffers over MPI, in token mode and in option mode (agreed peers, receive bounds from the held
// masks): the slots must be bit-identical, since both move the same bytes and the experts (here a
// per-expert scaling, the same kernel on every run) see the same rows. Forward and backward.
// Needs two ranks with one GPU each (mpirun -np 2, as launch/gpu_check.sh runs it on a machine
// with two GPUs); skips otherwise.
#include <gtest/gtest.h>

#include <cstdlib>

#include "parallel/mpi_communicator.hpp"
#include "parallel/nccl_communicator.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/core/counter_random.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace temoe {
namespace {

constexpr int64_t kExperts = 8, kTopK = 2, kKHat = 4, kTokens = 37, kWidth = 24;

int environment_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

// Expert e multiplies its rows by (e + 1): a wrong expert or a wrong row changes the result.
LocalExpertFunction scaling_expert(Backend& backend, const ExpertPlacement& placement, int rank) {
  return [&backend, &placement, rank](int64_t local, const Tensor& input, std::span<const int32_t> rows,
                                      std::span<const int32_t> output_rows, Tensor& output) {
    const int64_t global = placement.experts_of(rank).at(static_cast<size_t>(local));
    Tensor picked({static_cast<int64_t>(rows.size()), input.dim(1)}, input.device());
    backend.gather_rows(input, rows, picked);
    Tensor scaled({static_cast<int64_t>(rows.size()), input.dim(1)}, input.device());
    Tensor weights({static_cast<int64_t>(rows.size()), 1});
    weights.fill(static_cast<float>(global + 1));
    backend.combine_slots(picked, input.device() == Device::cpu ? weights : to_device(weights, input.device()), scaled, false);
    backend.scatter_rows(scaled, output_rows, output);
  };
}

struct HeldRouting {
  std::vector<int32_t> experts;  // kTokens * kTopK
  std::vector<uint8_t> flags;    // kTokens * kExperts
};

// Each token holds kKHat experts (a run of 5 tokens shares a mask) and routes to kTopK of them.
HeldRouting held_routing(int rank, uint64_t seed) {
  HeldRouting routing;
  routing.flags.assign(static_cast<size_t>(kTokens * kExperts), 0);
  CounterRandom random(seed, {static_cast<uint64_t>(rank)});
  std::vector<int32_t> mask;
  for (int64_t token = 0; token < kTokens; ++token) {
    if (token % 5 == 0) {
      const auto first = static_cast<int32_t>(random.next_u64() % kExperts);
      mask.clear();
      for (int32_t j = 0; j < kKHat; ++j) mask.push_back((first + 3 * j) % static_cast<int32_t>(kExperts));
    }
    for (const int32_t e : mask) routing.flags[static_cast<size_t>(token * kExperts + e)] = 1;
    const auto pick = static_cast<size_t>(random.next_u64() % kKHat);
    routing.experts.push_back(mask[pick]);
    routing.experts.push_back(mask[(pick + 1) % kKHat]);
  }
  return routing;
}

class CudaTokenDispatcher : public ::testing::TestWithParam<DispatchMode> {
 protected:
  void SetUp() override {
    TEMOE_SKIP_WITHOUT_CUDA();
    const int local_ranks = environment_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    if (mpi_.size() < 2) GTEST_SKIP() << "needs 2 ranks (mpirun -np 2); this run has " << mpi_.size();
    if (cuda_device_count() < local_ranks) {
      GTEST_SKIP() << "needs one CUDA device per local rank; this machine has " << cuda_device_count();
    }
    nccl_ = make_nccl_communicator(mpi_, environment_int("OMPI_COMM_WORLD_LOCAL_RANK", 0), local_ranks);
    cpu_ = make_backend(Device::cpu);
    gpu_ = make_backend(Device::cuda);
  }
  MpiCommunicator mpi_;
  std::unique_ptr<Communicator> nccl_;
  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_P(CudaTokenDispatcher, DeviceExchangeMatchesTheHostExchangeBitForBit) {
  const int rank = mpi_.rank();
  const ExpertPlacement placement = ExpertPlacement::contiguous(kExperts, mpi_.size());
  TokenDispatcher host(mpi_, placement), device(mpi_, placement);
  device.use_device_transport(*nccl_, *gpu_);
  host.set_mode(GetParam());
  device.set_mode(GetParam());
  for (uint64_t call = 0; call < 3; ++call) {  // the held plan carries over calls in option mode
    const Tensor hidden = testing::random_tensor({kTokens, kWidth}, 40 + call + 10 * static_cast<uint64_t>(rank));
    const HeldRouting routing = held_routing(rank, call / 2);  // calls 0 and 1 hold the same masks
    const HeldMasksView held{0, routing.flags};
    Tensor expected({kTokens * kTopK, kWidth}), actual({kTokens * kTopK, kWidth}, Device::cuda);
    DispatchTape host_tape, device_tape;
    host.dispatch(hidden, routing.experts, kTopK, expected, scaling_expert(*cpu_, placement, rank), &host_tape, &held);
    device.dispatch(testing::to_cuda(hidden), routing.experts, kTopK, actual, scaling_expert(*gpu_, placement, rank),
                    &device_tape, &held);
    EXPECT_EQ(actual.to_vector(), expected.to_vector()) << "rank " << rank << " call " << call;

    // Backward: the same scaling applied to the output gradients.
    const Tensor grad = testing::random_tensor({kTokens * kTopK, kWidth}, 60 + call + 10 * static_cast<uint64_t>(rank));
    Tensor expected_grad({kTokens * kTopK, kWidth}), actual_grad({kTokens * kTopK, kWidth}, Device::cuda);
    const auto backward = [&](Backend& backend) {
      return [&backend, &placement, rank](int64_t local, const Tensor&, std::span<const int32_t>,
                                          std::span<const int32_t> output_rows, const Tensor& grad_output,
                                          Tensor& grad_input) {
        scaling_expert(backend, placement, rank)(local, grad_output, output_rows, output_rows, grad_input);
      };
    };
    host.dispatch_backward(host_tape, grad, expected_grad, backward(*cpu_));
    device.dispatch_backward(device_tape, testing::to_cuda(grad), actual_grad, backward(*gpu_));
    EXPECT_EQ(actual_grad.to_vector(), expected_grad.to_vector()) << "rank " << rank << " call " << call;
  }
  EXPECT_EQ(device.statistics().messages, host.statistics().messages) << "the same peers talk on both transports";
}

std::string mode_name(const ::testing::TestParamInfo<DispatchMode>& mode) {
  return mode.param == DispatchMode::token ? "Token" : "Option";
}

INSTANTIATE_TEST_SUITE_P(BothModes, CudaTokenDispatcher, ::testing::Values(DispatchMode::token, DispatchMode::option),
                         mode_name);

}  // namespace
}  // namespace temoe
