// The NCCL communicator on device memory, checked against the MPI communicator (the reference
// every backend is tested against). Runs under mpirun with one rank per GPU; skips with a message
// where there is no GPU, as in CI.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/mpi_communicator.hpp"
#include "parallel/nccl_communicator.hpp"

namespace temoe {
namespace {

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int local_ranks = 1;
    if (const char* value = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) local_ranks = std::atoi(value);
    if (cuda_device_count() < local_ranks) {
      GTEST_SKIP() << "needs one CUDA device per local rank; this machine has " << cuda_device_count();
    }
    int local_rank = 0;
    if (const char* value = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) local_rank = std::atoi(value);
    nccl_ = make_nccl_communicator(mpi_, local_rank, local_ranks);
  }

  template <typename T>
  T* to_device(const std::vector<T>& values) {
    void* memory = nullptr;
    EXPECT_EQ(cudaMalloc(&memory, std::max<size_t>(values.size(), 1) * sizeof(T)), cudaSuccess);
    cudaMemcpy(memory, values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice);
    allocations_.push_back(memory);
    return static_cast<T*>(memory);
  }
  template <typename T>
  std::vector<T> to_host(const T* device, size_t count) {
    std::vector<T> values(count);
    cudaMemcpy(values.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost);
    return values;
  }
  void TearDown() override {
    for (void* memory : allocations_) cudaFree(memory);
  }

  MpiCommunicator mpi_;
  std::unique_ptr<Communicator> nccl_;
  std::vector<void*> allocations_;
};

TEST_F(NcclCommunicatorTest, AllReduceMatchesMpi) {
  std::vector<float> values(1000);
  std::iota(values.begin(), values.end(), static_cast<float>(mpi_.rank()));
  float* device = to_device(values);
  nccl_->all_reduce_sum(std::span<float>(device, values.size()));
  mpi_.all_reduce_sum(std::span<float>(values));
  EXPECT_EQ(to_host(device, values.size()), values);  // small integers: exact in any order
}

TEST_F(NcclCommunicatorTest, AllToAllVMatchesMpi) {
  const int size = mpi_.size(), rank = mpi_.rank();
  std::vector<size_t> send_counts(size), send_offsets(size), receive_counts(size), receive_offsets(size);
  std::vector<std::byte> send;
  for (int d = 0; d < size; ++d) {
    send_offsets[d] = send.size();
    send_counts[d] = static_cast<size_t>((rank + d) % 3) * 8;
    for (size_t i = 0; i < send_counts[d]; ++i) send.push_back(std::byte(rank * 31 + d * 7 + static_cast<int>(i)));
  }
  size_t total = 0;
  for (int s = 0; s < size; ++s) {
    receive_offsets[s] = total;
    receive_counts[s] = static_cast<size_t>((s + rank) % 3) * 8;
    total += receive_counts[s];
  }
  std::vector<std::byte> expected(total);
  mpi_.all_to_all_v(send, send_counts, send_offsets, expected, receive_counts, receive_offsets);
  std::byte* device_send = to_device(send);
  std::byte* device_receive = to_device(std::vector<std::byte>(total));
  nccl_->all_to_all_v(std::span<const std::byte>(device_send, send.size()), send_counts, send_offsets,
                      std::span<std::byte>(device_receive, total), receive_counts, receive_offsets);
  EXPECT_EQ(to_host(device_receive, total), expected);
}

TEST_F(NcclCommunicatorTest, ExchangesSizedBySendersAndBetweenPeersMatchMpi) {
  // Rank r sends (r + d) % 3 rows of 8 bytes to rank d; receivers learn the sizes from the
  // exchange (token mode), or bound them by 2 rows from every rank that sends (option mode).
  const int size = mpi_.size(), rank = mpi_.rank();
  std::vector<size_t> send_counts(size), send_offsets(size);
  std::vector<uint8_t> send_to(size);
  std::vector<std::byte> send;
  for (int d = 0; d < size; ++d) {
    send_offsets[d] = send.size();
    send_counts[d] = static_cast<size_t>((rank + d) % 3) * 8;
    send_to[d] = 1;
    for (size_t i = 0; i < send_counts[d]; ++i) send.push_back(std::byte(rank * 29 + d * 5 + static_cast<int>(i)));
  }
  std::vector<size_t> receive_offsets(size), bounds(size, 16);
  for (int s = 0; s < size; ++s) receive_offsets[s] = static_cast<size_t>(s) * 16;
  std::vector<std::byte> expected(static_cast<size_t>(size) * 16);
  const std::vector<size_t> expected_counts = mpi_.exchange_with_peers(send, send_counts, send_offsets, send_to, expected,
                                                                       bounds, receive_offsets);
  std::byte* device_send = to_device(send);
  std::byte* device_receive = to_device(std::vector<std::byte>(expected.size()));
  const std::vector<size_t> counts = nccl_->exchange_with_peers(
      std::span<const std::byte>(device_send, send.size()), send_counts, send_offsets, send_to,
      std::span<std::byte>(device_receive, expected.size()), bounds, receive_offsets);
  EXPECT_EQ(counts, expected_counts);
  const std::vector<std::byte> received = to_host(device_receive, expected.size());
  for (int s = 0; s < size; ++s) {
    for (size_t i = 0; i < counts[s]; ++i) EXPECT_EQ(received[receive_offsets[s] + i], expected[receive_offsets[s] + i]);
  }
}

}  // namespace
}  // namespace temoe
