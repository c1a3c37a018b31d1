// The reverse exchange (TokenDispatcher::dispatch_backward) under mpirun, with stand-in experts
// whose gradients are exact to predict: expert e computes out = in * (e + 1) + 0.5, so the
// gradient of its input is grad_out * (e + 1) for every (token, slot). Uneven loads, a rank with
// no tokens, an expert that receives nothing, and a slot's expert owned by the token's own rank.
#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/mpi_communicator.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/core/counter_random.hpp"
#include "tests/mpi/mpi_test_support.hpp"

namespace temoe {
namespace {

void run_backward_check(int64_t num_experts, int64_t top_k) {
  MpiCommunicator world;
  const int rank = world.rank();
  const int64_t width = 6;
  const int64_t tokens = rank == 1 ? 0 : 4 + 5 * rank;
  CounterRandom random(21, {static_cast<uint64_t>(rank)});
  Tensor hidden({tokens, width});
  for (int64_t i = 0; i < hidden.numel(); ++i) hidden.data()[i] = static_cast<float>(random.normal());
  std::vector<int32_t> experts;
  for (int64_t token = 0; token < tokens; ++token) {
    std::vector<int32_t> chosen;
    while (static_cast<int64_t>(chosen.size()) < top_k) {
      const auto expert = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(num_experts - 1));
      if (std::find(chosen.begin(), chosen.end(), expert) == chosen.end()) chosen.push_back(expert);
    }
    experts.insert(experts.end(), chosen.begin(), chosen.end());
  }
  TokenDispatcher dispatcher(world, ExpertPlacement::contiguous(num_experts, world.size()));
  const auto own = dispatcher.placement().experts_of(rank);
  Tensor slots({tokens * top_k, width});
  DispatchTape tape;
  dispatcher.dispatch(
      hidden, experts, top_k, slots,
      [&](int64_t local, const Tensor& input, std::span<const int32_t> rows, std::span<const int32_t> output_rows,
          Tensor& output) {
        for (size_t i = 0; i < rows.size(); ++i) {
          for (int64_t c = 0; c < width; ++c) {
            output.data()[output_rows[i] * width + c] =
                input.data()[rows[i] * width + c] * static_cast<float>(own[static_cast<size_t>(local)] + 1) + 0.5f;
          }
        }
      },
      &tape);
  Tensor grad_slots({tokens * top_k, width}), grad_inputs({tokens * top_k, width});
  for (int64_t i = 0; i < grad_slots.numel(); ++i) grad_slots.data()[i] = static_cast<float>(random.normal());
  grad_inputs.fill(-7.0f);
  int64_t backward_rows = 0;
  dispatcher.dispatch_backward(
      tape, grad_slots, grad_inputs,
      [&](int64_t local, const Tensor& input, std::span<const int32_t> rows, std::span<const int32_t> output_rows,
          const Tensor& grad_output, Tensor& grad_input) {
        EXPECT_EQ(input.dim(0), tape.input.dim(0));
        EXPECT_EQ(rows.size(), output_rows.size());
        backward_rows += static_cast<int64_t>(rows.size());
        for (size_t i = 0; i < rows.size(); ++i) {
          for (int64_t c = 0; c < width; ++c) {
            grad_input.data()[output_rows[i] * width + c] =
                grad_output.data()[output_rows[i] * width + c] * static_cast<float>(own[static_cast<size_t>(local)] + 1);
          }
        }
      });
  EXPECT_EQ(backward_rows, tape.pairs);
  bool exact = true;
  for (int64_t slot = 0; slot < tokens * top_k; ++slot) {
    const auto factor = static_cast<float>(experts[static_cast<size_t>(slot)] + 1);
    for (int64_t c = 0; c < width; ++c) {
      exact = exact && grad_inputs.data()[slot * width + c] == grad_slots.data()[slot * width + c] * factor;
    }
  }
  EXPECT_TRUE(testing::all_ranks(world, exact)) << "an input gradient is not grad_out * (expert + 1)";
}

TEST(TokenDispatcherBackward, ReturnsEveryInputGradientExactly) {
  MpiCommunicator world;
  run_backward_check(4 * world.size(), 2);
  run_backward_check(4 * world.size(), 3);
}

TEST(TokenDispatcherBackward, RefusesATapeOfAnotherGroupSize) {
  MpiCommunicator world;
  TokenDispatcher dispatcher(world, ExpertPlacement::contiguous(2 * world.size(), world.size()));
  DispatchTape tape;
  tape.top_k = 1;
  tape.width = 2;
  tape.slot_order.resize(static_cast<size_t>(world.size() + 1));
  tape.pairs_from.resize(static_cast<size_t>(world.size() + 1));
  Tensor grads({0, 2}), inputs({0, 2});
  EXPECT_THROW(dispatcher.dispatch_backward(tape, grads, inputs, {}), std::exception);
}

}  // namespace
}  // namespace temoe
