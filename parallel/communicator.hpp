#pragma once
// The communication seam: one interface over MPI (host memory) and NCCL (device memory). Buffers
// are raw bytes or floats with explicit counts; every entry point checks that counts and buffer
// sizes agree before anything is sent, and errors carry the rank.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

namespace temoe {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;

  // In-place elementwise sum over all ranks. The reduction order is fixed by the implementation,
  // so every rank gets bit-identical results.
  virtual void all_reduce_sum(std::span<float> values) = 0;
  virtual void all_reduce_sum(std::span<double> values) = 0;
  virtual void all_reduce_max(std::span<int64_t> values) = 0;
  // Variable-count all-to-all of bytes: send_counts[r] bytes at send_offsets[r] go to rank r.
  virtual void all_to_all_v(std::span<const std::byte> send, std::span<const size_t> send_counts,
                            std::span<const size_t> send_offsets, std::span<std::byte> receive,
                            std::span<const size_t> receive_counts, std::span<const size_t> receive_offsets) = 0;
  // Where the blocks of all_to_all_v_sized_by_senders go: a buffer and one offset per rank.
  struct ReceivePlacement {
    std::span<std::byte> buffer;
    std::vector<size_t> offsets;
  };
  using PlaceReceived = std::function<ReceivePlacement(std::span<const size_t> receive_counts)>;
  // Variable-count all-to-all whose receivers do not know their counts beforehand: `place` is
  // called once, with the bytes coming from each rank, and says where to put them. The default
  // exchanges the counts first (all_to_all, so through host memory: a backend whose buffers live
  // on a device must override it); MPI carries them in the message envelopes instead, which saves
  // a collective and the wait in it.
  virtual void all_to_all_v_sized_by_senders(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                             std::span<const size_t> send_offsets, const PlaceReceived& place);
  // True where all_to_all_v_sized_by_senders needs no separate counts exchange.
  virtual bool counts_travel_with_data() const { return false; }
  // An exchange between agreed peers only (option-mode dispatch): this rank sends one message to
  // every rank r with send_to[r] set (send_counts[r] bytes, possibly none), and receives one from
  // every rank r with receive_bounds[r] > 0, of at most receive_bounds[r] bytes, at
  // receive_offsets[r]. Both sides must agree beforehand on who talks to whom: rank s sets
  // send_to[r] exactly where rank r gives s a bound. Returns the bytes received from each rank.
  // There is no counts step and no message to a rank outside the agreement. The default goes
  // through all_to_all_v_sized_by_senders (correct, not cheaper); MPI posts bounded receives.
  virtual std::vector<size_t> exchange_with_peers(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                                  std::span<const size_t> send_offsets, std::span<const uint8_t> send_to,
                                                  std::span<std::byte> receive, std::span<const size_t> receive_bounds,
                                                  std::span<const size_t> receive_offsets);
  // Fixed-size all-to-all: `block` bytes to and from every rank.
  virtual void all_to_all(std::span<const std::byte> send, std::span<std::byte> receive, size_t block) = 0;
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  virtual void barrier() = 0;
  virtual void send(std::span<const std::byte> bytes, int destination, int tag) = 0;
  virtual void receive(std::span<std::byte> bytes, int source, int tag) = 0;
  // Gathers variable-sized byte blocks to `root`; returns them concatenated in rank order there.
  virtual std::vector<std::byte> gather_v(std::span<const std::byte> bytes, int root) = 0;

  // Split into sub-communicators by color, ordered by key (like MPI_Comm_split).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

inline void Communicator::all_to_all_v_sized_by_senders(std::span<const std::byte> send,
                                                        std::span<const size_t> send_counts,
                                                        std::span<const size_t> send_offsets, const PlaceReceived& place) {
  std::vector<uint64_t> sending(send_counts.begin(), send_counts.end()), receiving(sending.size());
  all_to_all(std::as_bytes(std::span<const uint64_t>(sending)), std::as_writable_bytes(std::span<uint64_t>(receiving)),
             sizeof(uint64_t));
  const std::vector<size_t> receive_counts(receiving.begin(), receiving.end());
  const ReceivePlacement placement = place(receive_counts);
  all_to_all_v(send, send_counts, send_offsets, placement.buffer, receive_counts, placement.offsets);
}

inline std::vector<size_t> Communicator::exchange_with_peers(std::span<const std::byte> send,
                                                             std::span<const size_t> send_counts,
                                                             std::span<const size_t> send_offsets,
                                                             std::span<const uint8_t> send_to, std::span<std::byte> receive,
                                                             std::span<const size_t> receive_bounds,
                                                             std::span<const size_t> receive_offsets) {
  std::vector<size_t> counts(send_counts.size()), received;
  for (size_t r = 0; r < counts.size(); ++r) counts[r] = send_to[r] ? send_counts[r] : 0;
  all_to_all_v_sized_by_senders(send, counts, send_offsets, [&](std::span<const size_t> receive_counts) {
    received.assign(receive_counts.begin(), receive_counts.end());
    for (size_t r = 0; r < received.size(); ++r) {
      if (received[r] > receive_bounds[r]) {
        throw std::runtime_error("rank " + std::to_string(rank()) + ": exchange_with_peers received " +
                                 std::to_string(received[r]) + " bytes from rank " + std::to_string(r) +
                                 ", above the agreed bound of " + std::to_string(receive_bounds[r]));
      }
    }
    return ReceivePlacement{receive, std::vector<size_t>(receive_offsets.begin(), receive_offsets.end())};
  });
  return received;
}

template <typename T>
std::span<const std::byte> as_bytes_span(std::span<const T> values) {
  return std::as_bytes(values);
}

}  // namespace temoe
