#include "parallel/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/cuda/local_gpu.hpp"

namespace temoe {

namespace {

#define TEMOE_NCCL_CHECK(call, rank)                                                                    \
  do {                                                                                                  \
    const ncclResult_t temoe_nccl_status_ = (call);                                                     \
    TEMOE_CHECK(temoe_nccl_status_ == ncclSuccess,                                                      \
                "rank " << (rank) << ": " << #call << " failed: " << ncclGetErrorString(temoe_nccl_status_)); \
  } while (0)

#define TEMOE_CUDA_CHECK(call, rank)                                                                    \
  do {                                                                                                  \
    const cudaError_t temoe_cuda_status_ = (call);                                                      \
    TEMOE_CHECK(temoe_cuda_status_ == cudaSuccess,                                                      \
                "rank " << (rank) << ": " << #call << " failed: " << cudaGetErrorString(temoe_cuda_status_)); \
  } while (0)

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t communicator, cudaStream_t stream, int rank, int size)
      : communicator_(communicator), stream_(stream), rank_(rank), size_(size) {}
  ~NcclCommunicator() override {
    if (default_stream_done_) cudaEventDestroy(default_stream_done_);
    if (scratch_) cudaFree(scratch_);
    ncclCommDestroy(communicator_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "nccl"; }

  // NCCL's ring and tree sums are deterministic for a fixed world and topology, and identical on
  // every rank, but their order differs from MpiCommunicator's rank order.
  void all_reduce_sum(std::span<float> values) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat32, ncclSum, communicator_, stream_), rank_);
    synchronize();
  }
  void all_reduce_sum(std::span<double> values) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat64, ncclSum, communicator_, stream_), rank_);
    synchronize();
  }
  void all_reduce_max(std::span<int64_t> values) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclAllReduce(values.data(), values.data(), values.size(), ncclInt64, ncclMax, communicator_, stream_), rank_);
    synchronize();
  }
  void all_to_all_v(std::span<const std::byte> send, std::span<const size_t> send_counts,
                    std::span<const size_t> send_offsets, std::span<std::byte> receive,
                    std::span<const size_t> receive_counts, std::span<const size_t> receive_offsets) override {
    const auto ranks = static_cast<size_t>(size_);
    TEMOE_CHECK(send_counts.size() == ranks && send_offsets.size() == ranks && receive_counts.size() == ranks &&
                    receive_offsets.size() == ranks,
                "rank " << rank_ << ": all_to_all_v needs " << ranks << " counts and offsets per side");
    for (size_t r = 0; r < ranks; ++r) {
      TEMOE_CHECK(send_offsets[r] + send_counts[r] <= send.size() && receive_offsets[r] + receive_counts[r] <= receive.size(),
                  "rank " << rank_ << ": all_to_all_v block " << r << " outside its buffer");
    }
    // Grouped point-to-point: only peers with traffic exchange anything.
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclGroupStart(), rank_);
    for (int r = 0; r < size_; ++r) {
      if (send_counts[r]) {
        TEMOE_NCCL_CHECK(ncclSend(send.data() + send_offsets[r], send_counts[r], ncclUint8, r, communicator_, stream_), rank_);
      }
      if (receive_counts[r]) {
        TEMOE_NCCL_CHECK(ncclRecv(receive.data() + receive_offsets[r], receive_counts[r], ncclUint8, r, communicator_, stream_), rank_);
      }
    }
    TEMOE_NCCL_CHECK(ncclGroupEnd(), rank_);
    synchronize();
  }
  // The counts live on the host, NCCL moves device memory only: they go through a small device
  // buffer, then the blocks through all_to_all_v.
  void all_to_all_v_sized_by_senders(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                     std::span<const size_t> send_offsets, const PlaceReceived& place) override {
    const auto ranks = static_cast<size_t>(size_);
    TEMOE_CHECK(send_counts.size() == ranks, "rank " << rank_ << ": all_to_all_v_sized_by_senders needs " << ranks
                                                     << " send counts, got " << send_counts.size());
    std::vector<uint64_t> counts(send_counts.begin(), send_counts.end());
    const size_t bytes = ranks * sizeof(uint64_t);
    std::byte* sending = scratch(2 * bytes);
    std::byte* receiving = sending + bytes;
    TEMOE_CUDA_CHECK(cudaMemcpy(sending, counts.data(), bytes, cudaMemcpyHostToDevice), rank_);
    all_to_all(std::span<const std::byte>(sending, bytes), std::span<std::byte>(receiving, bytes), sizeof(uint64_t));
    TEMOE_CUDA_CHECK(cudaMemcpy(counts.data(), receiving, bytes, cudaMemcpyDeviceToHost), rank_);
    const std::vector<size_t> receive_counts(counts.begin(), counts.end());
    const ReceivePlacement placement = place(receive_counts);
    all_to_all_v(send, send_counts, send_offsets, placement.buffer, receive_counts, placement.offsets);
  }
  // Option mode's exchange between agreed peers. NCCL's receives must know their exact sizes
  // (there are no bounded receives), so the agreed peers first swap their sizes, 8 bytes each way,
  // then the blocks: two grouped rounds, and no message at all to a rank outside the agreement.
  std::vector<size_t> exchange_with_peers(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                          std::span<const size_t> send_offsets, std::span<const uint8_t> send_to,
                                          std::span<std::byte> receive, std::span<const size_t> receive_bounds,
                                          std::span<const size_t> receive_offsets) override {
    const auto ranks = static_cast<size_t>(size_);
    TEMOE_CHECK(send_counts.size() == ranks && send_offsets.size() == ranks && send_to.size() == ranks &&
                    receive_bounds.size() == ranks && receive_offsets.size() == ranks,
                "rank " << rank_ << ": exchange_with_peers needs " << ranks << " counts, offsets, flags and bounds per side");
    for (size_t r = 0; r < ranks; ++r) {
      TEMOE_CHECK(!send_to[r] || send_offsets[r] + send_counts[r] <= send.size(),
                  "rank " << rank_ << ": exchange_with_peers block for rank " << r << " (" << send_counts[r] << " bytes at "
                          << send_offsets[r] << ") outside the " << send.size() << "-byte send buffer");
      TEMOE_CHECK(receive_offsets[r] + receive_bounds[r] <= receive.size(),
                  "rank " << rank_ << ": exchange_with_peers bound for rank " << r << " (" << receive_bounds[r]
                          << " bytes at " << receive_offsets[r] << ") outside the " << receive.size()
                          << "-byte receive buffer");
    }
    std::vector<uint64_t> sizes(2 * ranks, 0);  // [0, ranks): what this rank sends; then what it receives
    for (size_t r = 0; r < ranks; ++r) sizes[r] = send_to[r] ? send_counts[r] : 0;
    const size_t bytes = sizes.size() * sizeof(uint64_t);
    auto* device_sizes = reinterpret_cast<uint64_t*>(scratch(bytes));
    TEMOE_CUDA_CHECK(cudaMemcpy(device_sizes, sizes.data(), bytes, cudaMemcpyHostToDevice), rank_);
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclGroupStart(), rank_);
    for (int r = 0; r < size_; ++r) {
      if (send_to[r]) TEMOE_NCCL_CHECK(ncclSend(device_sizes + r, 1, ncclUint64, r, communicator_, stream_), rank_);
      if (receive_bounds[r] > 0) {
        TEMOE_NCCL_CHECK(ncclRecv(device_sizes + ranks + r, 1, ncclUint64, r, communicator_, stream_), rank_);
      }
    }
    TEMOE_NCCL_CHECK(ncclGroupEnd(), rank_);
    synchronize();
    TEMOE_CUDA_CHECK(cudaMemcpy(sizes.data(), device_sizes, bytes, cudaMemcpyDeviceToHost), rank_);
    std::vector<size_t> received(ranks, 0);
    for (size_t r = 0; r < ranks; ++r) {
      if (receive_bounds[r] == 0) continue;
      received[r] = sizes[ranks + r];
      TEMOE_CHECK(received[r] <= receive_bounds[r], "rank " << rank_ << ": exchange_with_peers: rank " << r << " sends "
                                                            << received[r] << " bytes, above the agreed bound of "
                                                            << receive_bounds[r]);
    }
    TEMOE_NCCL_CHECK(ncclGroupStart(), rank_);
    for (int r = 0; r < size_; ++r) {
      if (send_to[r] && sizes[r] > 0) {
        TEMOE_NCCL_CHECK(ncclSend(send.data() + send_offsets[r], sizes[r], ncclUint8, r, communicator_, stream_), rank_);
      }
      if (received[r] > 0) {
        TEMOE_NCCL_CHECK(ncclRecv(receive.data() + receive_offsets[r], received[r], ncclUint8, r, communicator_, stream_), rank_);
      }
    }
    TEMOE_NCCL_CHECK(ncclGroupEnd(), rank_);
    synchronize();
    return received;
  }
  void all_to_all(std::span<const std::byte> send, std::span<std::byte> receive, size_t block) override {
    std::vector<size_t> counts(static_cast<size_t>(size_), block), offsets(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) offsets[r] = block * static_cast<size_t>(r);
    all_to_all_v(send, counts, offsets, receive, counts, offsets);
  }
  void broadcast(std::span<std::byte> bytes, int root) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclBroadcast(bytes.data(), bytes.data(), bytes.size(), ncclUint8, root, communicator_, stream_), rank_);
    synchronize();
  }
  void barrier() override {
    all_reduce_sum(std::span<float>(reinterpret_cast<float*>(scratch(sizeof(float))), 1));
  }
  void send(std::span<const std::byte> bytes, int destination, int) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclSend(bytes.data(), bytes.size(), ncclUint8, destination, communicator_, stream_), rank_);
    synchronize();
  }
  void receive(std::span<std::byte> bytes, int source, int) override {
    after_default_stream();
    TEMOE_NCCL_CHECK(ncclRecv(bytes.data(), bytes.size(), ncclUint8, source, communicator_, stream_), rank_);
    synchronize();
  }
  std::vector<std::byte> gather_v(std::span<const std::byte>, int) override {
    TEMOE_FAIL("rank " << rank_ << ": gather_v of device memory is not offered by the NCCL communicator; "
                          "copy to the host and use the MPI communicator");
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    ncclComm_t part = nullptr;
    TEMOE_NCCL_CHECK(ncclCommSplit(communicator_, color, key, &part, nullptr), rank_);
    int part_rank = 0, part_size = 0;
    ncclCommUserRank(part, &part_rank);
    ncclCommCount(part, &part_size);
    cudaStream_t stream = nullptr;
    TEMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), rank_);
    return std::make_unique<NcclCommunicator>(part, stream, part_rank, part_size);
  }

 private:
  void synchronize() { TEMOE_CUDA_CHECK(cudaStreamSynchronize(stream_), rank_); }
  // The CUDA backend's kernels run on the legacy default stream, which a non-blocking stream does
  // not wait for: without this, a send could read a buffer that a gather kernel is still filling.
  // (Work after a collective is ordered by synchronize(): the host waits before it queues more.)
  void after_default_stream() {
    if (!default_stream_done_) {
      TEMOE_CUDA_CHECK(cudaEventCreateWithFlags(&default_stream_done_, cudaEventDisableTiming), rank_);
    }
    TEMOE_CUDA_CHECK(cudaEventRecord(default_stream_done_, cudaStreamLegacy), rank_);
    TEMOE_CUDA_CHECK(cudaStreamWaitEvent(stream_, default_stream_done_, 0), rank_);
  }
  // A small device buffer for host-side values that must travel through NCCL (counts, a barrier's
  // flag), kept across calls: cudaMalloc and cudaFree synchronise the device.
  std::byte* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      if (scratch_) cudaFree(scratch_);
      scratch_ = nullptr;
      scratch_bytes_ = 0;
      TEMOE_CUDA_CHECK(cudaMalloc(&scratch_, bytes), rank_);
      scratch_bytes_ = bytes;
    }
    return static_cast<std::byte*>(scratch_);
  }

  ncclComm_t communicator_;
  cudaStream_t stream_;
  int rank_;
  int size_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  cudaEvent_t default_stream_done_ = nullptr;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int local_rank, int local_ranks) {
  const int rank = bootstrap.rank();
  select_local_gpu(local_rank, local_ranks);
  ncclUniqueId id;
  if (rank == 0) TEMOE_NCCL_CHECK(ncclGetUniqueId(&id), rank);
  bootstrap.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
  ncclComm_t communicator = nullptr;
  TEMOE_NCCL_CHECK(ncclCommInitRank(&communicator, bootstrap.size(), id, rank), rank);
  cudaStream_t stream = nullptr;
  TEMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), rank);
  return std::make_unique<NcclCommunicator>(communicator, stream, rank, bootstrap.size());
}

}  // namespace temoe
