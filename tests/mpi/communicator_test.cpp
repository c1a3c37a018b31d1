// The MPI communicator under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "tests/mpi/mpi_test_support.hpp"

namespace temoe {
namespace {

TEST(MpiCommunicator, OrderedSumIsTheSameOnEveryRankAndExact) {
  MpiCommunicator world;
  const int rank = world.rank(), size = world.size();
  // Values whose float sum depends on the order: every rank must still see identical bits, and
  // they must equal the rank-order sum computed here.
  std::vector<float> values = {1e8f * static_cast<float>(rank % 2 ? -1 : 1), 1.0f / static_cast<float>(rank + 3),
                               static_cast<float>(rank)};
  std::vector<float> expected(values.size(), 0.0f);
  for (size_t i = 0; i < values.size(); ++i) {
    for (int r = 0; r < size; ++r) {
      const float contribution = i == 0 ? 1e8f * static_cast<float>(r % 2 ? -1 : 1)
                                 : i == 1 ? 1.0f / static_cast<float>(r + 3)
                                          : static_cast<float>(r);
      expected[i] = r == 0 ? contribution : expected[i] + contribution;
    }
  }
  world.all_reduce_sum(std::span<float>(values));
  EXPECT_EQ(values, expected);
  std::vector<float> from_root = values;
  world.broadcast(std::as_writable_bytes(std::span<float>(from_root)), 0);
  EXPECT_EQ(from_root, values) << "rank " << rank << " disagrees with rank 0";
}

TEST(MpiCommunicator, AllToAllVWithUnevenAndEmptyBlocks) {
  MpiCommunicator world;
  const int rank = world.rank(), size = world.size();
  // Rank r sends (r + d) % 3 bytes to rank d, each byte = 16 * r + d; zero-length blocks included.
  std::vector<size_t> send_counts(size), send_offsets(size), receive_counts(size), receive_offsets(size);
  std::vector<std::byte> send;
  for (int d = 0; d < size; ++d) {
    send_offsets[d] = send.size();
    send_counts[d] = static_cast<size_t>((rank + d) % 3);
    send.insert(send.end(), send_counts[d], std::byte(16 * rank + d));
  }
  size_t total = 0;
  for (int s = 0; s < size; ++s) {
    receive_offsets[s] = total;
    receive_counts[s] = static_cast<size_t>((s + rank) % 3);
    total += receive_counts[s];
  }
  std::vector<std::byte> receive(total, std::byte{0xFF});
  world.all_to_all_v(send, send_counts, send_offsets, receive, receive_counts, receive_offsets);
  for (int s = 0; s < size; ++s) {
    for (size_t i = 0; i < receive_counts[s]; ++i) {
      EXPECT_EQ(receive[receive_offsets[s] + i], std::byte(16 * s + rank)) << "from rank " << s;
    }
  }
}

// Rank r sends (r + d) % 3 + (d == 1 ? 5 : 0) bytes to rank d, each byte = 16 * r + d; the receiver
// learns the counts from the exchange and places each block after a gap of 2 bytes.
void check_sized_by_senders(Communicator& world, bool through_the_default) {
  const int rank = world.rank(), size = world.size();
  std::vector<size_t> send_counts(size), send_offsets(size);
  std::vector<std::byte> send;
  for (int d = 0; d < size; ++d) {
    send_offsets[d] = send.size();
    send_counts[d] = static_cast<size_t>((rank + d) % 3 + (d == 1 ? 5 : 0));
    send.insert(send.end(), send_counts[d], std::byte(16 * rank + d));
  }
  std::vector<size_t> seen_counts;
  std::vector<std::byte> receive;
  const Communicator::PlaceReceived place = [&](std::span<const size_t> counts) {
    seen_counts.assign(counts.begin(), counts.end());
    Communicator::ReceivePlacement placement;
    size_t total = 0;
    for (const size_t count : counts) {
      placement.offsets.push_back(total + 2);
      total += count + 2;
    }
    receive.assign(total, std::byte{0xFF});
    placement.buffer = receive;
    return placement;
  };
  if (through_the_default) {
    world.Communicator::all_to_all_v_sized_by_senders(send, send_counts, send_offsets, place);
  } else {
    world.all_to_all_v_sized_by_senders(send, send_counts, send_offsets, place);
  }
  bool exact = static_cast<int>(seen_counts.size()) == size;
  size_t offset = 0;
  for (int s = 0; exact && s < size; ++s) {
    const auto expected = static_cast<size_t>((s + rank) % 3 + (rank == 1 ? 5 : 0));
    exact = seen_counts[s] == expected && receive[offset] == std::byte{0xFF} && receive[offset + 1] == std::byte{0xFF};
    for (size_t i = 0; exact && i < expected; ++i) exact = receive[offset + 2 + i] == std::byte(16 * s + rank);
    offset += expected + 2;
  }
  EXPECT_TRUE(testing::all_ranks(world, exact)) << "rank " << rank << " received other counts or bytes";
}

TEST(MpiCommunicator, AllToAllVSizedBySendersCarriesTheCountsWithTheData) {
  MpiCommunicator world;
  EXPECT_TRUE(world.counts_travel_with_data());
  check_sized_by_senders(world, /*through_the_default=*/false);
  check_sized_by_senders(world, /*through_the_default=*/false);  // consecutive calls do not mix
  check_sized_by_senders(world, /*through_the_default=*/true);   // the counts exchange every backend has
}

TEST(MpiCommunicator, RefusesBlocksOutsideTheBuffer) {
  MpiCommunicator world;
  const size_t size = static_cast<size_t>(world.size());
  std::vector<size_t> counts(size, 4), offsets(size, 0);
  std::vector<std::byte> small(2);
  // Checked before any message is sent, so every rank throws and nobody waits.
  EXPECT_THROW(world.all_to_all_v(small, counts, offsets, small, counts, offsets), Error);
}

TEST(MpiCommunicator, GatherVConcatenatesInRankOrder) {
  MpiCommunicator world;
  std::vector<int32_t> mine(static_cast<size_t>(world.rank()), world.rank());  // rank r sends r copies of r
  const auto gathered = world.gather_v(std::as_bytes(std::span<const int32_t>(mine)), 0);
  if (world.rank() == 0) {
    std::vector<int32_t> expected;
    for (int r = 0; r < world.size(); ++r) expected.insert(expected.end(), static_cast<size_t>(r), r);
    ASSERT_EQ(gathered.size(), expected.size() * 4);
    EXPECT_EQ(0, std::memcmp(gathered.data(), expected.data(), gathered.size()));
  } else {
    EXPECT_TRUE(gathered.empty());
  }
}

TEST(MpiCommunicator, SplitOrdersByKey) {
  MpiCommunicator world;
  auto parity = world.split(world.rank() % 2, -world.rank());
  int expected_size = 0;
  for (int r = 0; r < world.size(); ++r) expected_size += (r % 2 == world.rank() % 2);
  EXPECT_EQ(parity->size(), expected_size);
  // Keys are descending world ranks, so the highest world rank of each parity is rank 0.
  int highest = world.rank();
  while (highest + 2 < world.size()) highest += 2;
  EXPECT_EQ(parity->rank(), (highest - world.rank()) / 2);
}

}  // namespace
}  // namespace temoe
