// Token-mode dispatch under mpirun: every (token, slot) gets exactly its expert's output, with
// uneven loads, ranks that have no tokens and experts that receive none; traffic counters add up.
#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "parallel/token_dispatcher.hpp"
#include "src/core/counter_random.hpp"
#include "tests/mpi/mpi_test_support.hpp"

namespace temoe {
namespace {

// A stand-in expert whose output is exact to predict: out = in * (expert + 1) + 0.5.
float expert_output(float input, int64_t expert) { return input * static_cast<float>(expert + 1) + 0.5f; }

struct RoutedBatch {
  Tensor hidden;                 // [N, D]
  std::vector<int32_t> experts;  // N * k
};

RoutedBatch make_batch(int rank, int64_t tokens, int64_t width, int64_t num_experts, int64_t top_k) {
  RoutedBatch batch{Tensor({tokens, width}), {}};
  CounterRandom random(11, {static_cast<uint64_t>(rank)});
  for (int64_t i = 0; i < batch.hidden.numel(); ++i) batch.hidden.data()[i] = static_cast<float>(random.normal());
  for (int64_t token = 0; token < tokens; ++token) {
    std::vector<int32_t> chosen;
    while (static_cast<int64_t>(chosen.size()) < top_k) {
      // The last expert is never chosen, so its owner gets no rows for it.
      const auto expert = static_cast<int32_t>(random.next_u64() % static_cast<uint64_t>(num_experts - 1));
      if (std::find(chosen.begin(), chosen.end(), expert) == chosen.end()) chosen.push_back(expert);
    }
    batch.experts.insert(batch.experts.end(), chosen.begin(), chosen.end());
  }
  return batch;
}

// Forwards everything to MPI except all_to_all_v_sized_by_senders, so that the dispatcher takes the
// path of backends whose counts cannot travel with the data: a counts exchange first.
class CountsFirstCommunicator final : public Communicator {
 public:
  explicit CountsFirstCommunicator(Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string backend_name() const override { return "counts-first"; }
  void all_reduce_sum(std::span<float> values) override { inner_.all_reduce_sum(values); }
  void all_reduce_sum(std::span<double> values) override { inner_.all_reduce_sum(values); }
  void all_reduce_max(std::span<int64_t> values) override { inner_.all_reduce_max(values); }
  void all_to_all_v(std::span<const std::byte> send, std::span<const size_t> send_counts,
                    std::span<const size_t> send_offsets, std::span<std::byte> receive,
                    std::span<const size_t> receive_counts, std::span<const size_t> receive_offsets) override {
    inner_.all_to_all_v(send, send_counts, send_offsets, receive, receive_counts, receive_offsets);
  }
  void all_to_all(std::span<const std::byte> send, std::span<std::byte> receive, size_t block) override {
    inner_.all_to_all(send, receive, block);
  }
  void broadcast(std::span<std::byte> bytes, int root) override { inner_.broadcast(bytes, root); }
  void barrier() override { inner_.barrier(); }
  void send(std::span<const std::byte> bytes, int destination, int tag) override { inner_.send(bytes, destination, tag); }
  void receive(std::span<std::byte> bytes, int source, int tag) override { inner_.receive(bytes, source, tag); }
  std::vector<std::byte> gather_v(std::span<const std::byte> bytes, int root) override { return inner_.gather_v(bytes, root); }
  std::unique_ptr<Communicator> split(int color, int key) override { return inner_.split(color, key); }

 private:
  Communicator& inner_;
};

void run_dispatch_check(int64_t num_experts, int64_t top_k, bool counts_first = false) {
  MpiCommunicator mpi;
  CountsFirstCommunicator counts_first_world(mpi);
  Communicator& world = counts_first ? static_cast<Communicator&>(counts_first_world) : mpi;
  const int rank = world.rank();
  const int64_t width = 8;
  // Uneven loads; rank 1 has no tokens at all.
  const int64_t tokens = rank == 1 ? 0 : 5 + 7 * rank;
  const RoutedBatch batch = make_batch(rank, tokens, width, num_experts, top_k);
  TokenDispatcher dispatcher(world, ExpertPlacement::contiguous(num_experts, world.size()));
  const auto own = dispatcher.placement().experts_of(rank);
  Tensor slots({tokens * top_k, width});
  slots.fill(-1.0f);
  dispatcher.dispatch(batch.hidden, batch.experts, top_k, slots,
                      [&](int64_t local, const Tensor& input, std::span<const int32_t> rows,
                          std::span<const int32_t> output_rows, Tensor& output) {
                        ASSERT_LT(local, static_cast<int64_t>(own.size()));
                        for (size_t i = 0; i < rows.size(); ++i) {
                          for (int64_t c = 0; c < width; ++c) {
                            output.data()[output_rows[i] * width + c] =
                                expert_output(input.data()[rows[i] * width + c], own[static_cast<size_t>(local)]);
                          }
                        }
                      });
  bool exact = true;
  for (int64_t slot = 0; slot < tokens * top_k; ++slot) {
    for (int64_t c = 0; c < width; ++c) {
      const float expected = expert_output(batch.hidden.data()[(slot / top_k) * width + c], batch.experts[slot]);
      exact = exact && slots.data()[slot * width + c] == expected;
    }
  }
  EXPECT_TRUE(exact) << "rank " << rank << ": a slot does not hold its expert's output";
  EXPECT_TRUE(testing::all_ranks(world, exact));

  // Every byte sent (to others or to itself) was received by someone.
  const auto& statistics = dispatcher.statistics();
  double totals[2] = {static_cast<double>(statistics.remote_bytes_sent + statistics.local_bytes),
                      static_cast<double>(statistics.bytes_received)};
  world.all_reduce_sum(std::span<double>(totals, 2));
  EXPECT_EQ(totals[0], totals[1]);
  EXPECT_GT(totals[0], 0);
  EXPECT_EQ(statistics.layer_calls, 1);
  EXPECT_EQ(statistics.counts_exchanges, counts_first ? 1 : 0);
  EXPECT_EQ(statistics.tokens, tokens);
  EXPECT_LE(statistics.peers, world.size() - 1);
  if (world.size() == 1) {
    EXPECT_EQ(statistics.remote_bytes_sent, 0);
  }
}

TEST(TokenDispatcher, TopTwoOfEightWithAnIdleRankAndAnUnusedExpert) { run_dispatch_check(8, 2); }

TEST(TokenDispatcher, TopThreeOfSixteen) { run_dispatch_check(16, 3); }

TEST(TokenDispatcher, ExchangesCountsFirstWhereTheyCannotTravelWithTheRows) {
  run_dispatch_check(8, 2, /*counts_first=*/true);
  run_dispatch_check(16, 3, /*counts_first=*/true);
}

TEST(TokenDispatcher, RejectsExpertIdsOutsideTheModel) {
  MpiCommunicator world;
  TokenDispatcher dispatcher(world, ExpertPlacement::contiguous(8, world.size()));
  Tensor hidden({1, 4}), slots({1, 4});
  hidden.fill(1.0f);
  const std::vector<int32_t> bad = {8};
  // Checked while planning, before the first collective: every rank throws, none hangs.
  EXPECT_THROW(dispatcher.dispatch(hidden, bad, 1, slots, [](auto, const auto&, auto, auto, auto&) {}), Error);
}

}  // namespace
}  // namespace temoe
