#pragma once
// The MPI implementation of Communicator, for host memory. Owns a duplicated MPI communicator so
// that temoe's traffic never matches messages of another library on the same ranks, and a second
// one for the point-to-point messages of all_to_all_v_sized_by_senders, so that they never match
// the caller's send/receive, whatever its tags.
#include <mpi.h>

#include "parallel/communicator.hpp"

namespace temoe {

// Initialises MPI (threads: funneled) for the lifetime of the object; finalises it at the end.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm base = MPI_COMM_WORLD);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }
  MPI_Comm handle() const { return communicator_; }

  void all_reduce_sum(std::span<float> values) override;
  void all_reduce_sum(std::span<double> values) override;
  void all_reduce_max(std::span<int64_t> values) override;
  void all_to_all_v(std::span<const std::byte> send, std::span<const size_t> send_counts,
                    std::span<const size_t> send_offsets, std::span<std::byte> receive,
                    std::span<const size_t> receive_counts, std::span<const size_t> receive_offsets) override;
  void all_to_all_v_sized_by_senders(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                     std::span<const size_t> send_offsets, const PlaceReceived& place) override;
  bool counts_travel_with_data() const override { return true; }
  std::vector<size_t> exchange_with_peers(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                          std::span<const size_t> send_offsets, std::span<const uint8_t> send_to,
                                          std::span<std::byte> receive, std::span<const size_t> receive_bounds,
                                          std::span<const size_t> receive_offsets) override;
  void all_to_all(std::span<const std::byte> send, std::span<std::byte> receive, size_t block) override;
  void broadcast(std::span<std::byte> bytes, int root) override;
  void barrier() override;
  void send(std::span<const std::byte> bytes, int destination, int tag) override;
  void receive(std::span<std::byte> bytes, int source, int tag) override;
  std::vector<std::byte> gather_v(std::span<const std::byte> bytes, int root) override;
  std::unique_ptr<Communicator> split(int color, int key) override;

 private:
  struct Adopt {};
  MpiCommunicator(MPI_Comm owned, Adopt);
  template <typename T>
  void ordered_sum(std::span<T> values, MPI_Datatype type);

  MPI_Comm communicator_ = MPI_COMM_NULL;
  MPI_Comm exchange_communicator_ = MPI_COMM_NULL;  // all_to_all_v_sized_by_senders' messages only
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace temoe
