#include "parallel/mpi_communicator.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

namespace {

void check_mpi(int status, const char* call, int rank) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  TEMOE_FAIL("rank " << rank << ": " << call << " failed: " << std::string(text, static_cast<size_t>(length)));
}

int to_int(size_t value, const char* what, int rank) {
  TEMOE_CHECK(value <= static_cast<size_t>(INT_MAX),
              "rank " << rank << ": " << what << " of " << value << " bytes exceeds what one MPI call carries");
  return static_cast<int>(value);
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", 0);
  }
  // Errors come back as codes and become exceptions with the rank, instead of aborting silently.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  // Unwinding from an error: the other ranks may be inside a collective and MPI_Finalize would
  // wait for them forever. Leave MPI up so that main() can MPI_Abort the whole job.
  if (std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm base) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  TEMOE_CHECK(initialized, "MpiCommunicator needs MPI to be initialised (an MpiSession)");
  check_mpi(MPI_Comm_dup(base, &communicator_), "MPI_Comm_dup", 0);
  MPI_Comm_set_errhandler(communicator_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(communicator_, &rank_);
  MPI_Comm_size(communicator_, &size_);
  check_mpi(MPI_Comm_dup(communicator_, &exchange_communicator_), "MPI_Comm_dup", rank_);
  MPI_Comm_set_errhandler(exchange_communicator_, MPI_ERRORS_RETURN);
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned, Adopt) : communicator_(owned) {
  MPI_Comm_set_errhandler(communicator_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(communicator_, &rank_);
  MPI_Comm_size(communicator_, &size_);
  check_mpi(MPI_Comm_dup(communicator_, &exchange_communicator_), "MPI_Comm_dup", rank_);
  MPI_Comm_set_errhandler(exchange_communicator_, MPI_ERRORS_RETURN);
}

MpiCommunicator::~MpiCommunicator() {
  // MPI_Comm_free is collective; while unwinding from an error it could wait on ranks that are
  // blocked elsewhere, so the handle is left to MPI_Abort.
  if (std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (exchange_communicator_ != MPI_COMM_NULL) MPI_Comm_free(&exchange_communicator_);
  if (communicator_ != MPI_COMM_NULL) MPI_Comm_free(&communicator_);
}

template <typename T>
void MpiCommunicator::ordered_sum(std::span<T> values, MPI_Datatype type) {
  // Gather every rank's values and add them in rank order: the same bits on every rank and for
  // every run, which MPI_Allreduce does not promise. Chunked to bound the temporary buffer.
  constexpr size_t kChunk = 1 << 18;
  std::vector<T> gathered;
  for (size_t begin = 0; begin < values.size(); begin += kChunk) {
    const size_t count = std::min(kChunk, values.size() - begin);
    gathered.resize(count * static_cast<size_t>(size_));
    check_mpi(MPI_Allgather(values.data() + begin, to_int(count, "all_reduce chunk", rank_), type, gathered.data(),
                            static_cast<int>(count), type, communicator_),
              "MPI_Allgather", rank_);
    for (size_t i = 0; i < count; ++i) {
      T total = gathered[i];
      for (int r = 1; r < size_; ++r) total += gathered[static_cast<size_t>(r) * count + i];
      values[begin + i] = total;
    }
  }
}

void MpiCommunicator::all_reduce_sum(std::span<float> values) { ordered_sum(values, MPI_FLOAT); }
void MpiCommunicator::all_reduce_sum(std::span<double> values) { ordered_sum(values, MPI_DOUBLE); }

void MpiCommunicator::all_reduce_max(std::span<int64_t> values) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(), to_int(values.size(), "all_reduce_max", rank_), MPI_INT64_T,
                          MPI_MAX, communicator_),
            "MPI_Allreduce", rank_);
}

void MpiCommunicator::all_to_all_v(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                   std::span<const size_t> send_offsets, std::span<std::byte> receive,
                                   std::span<const size_t> receive_counts, std::span<const size_t> receive_offsets) {
  const auto ranks = static_cast<size_t>(size_);
  TEMOE_CHECK(send_counts.size() == ranks && send_offsets.size() == ranks && receive_counts.size() == ranks &&
                  receive_offsets.size() == ranks,
              "rank " << rank_ << ": all_to_all_v needs " << ranks << " counts and offsets per side");
  std::vector<int> send_count(ranks), send_offset(ranks), receive_count(ranks), receive_offset(ranks);
  for (size_t r = 0; r < ranks; ++r) {
    TEMOE_CHECK(send_offsets[r] + send_counts[r] <= send.size(),
                "rank " << rank_ << ": all_to_all_v send block " << r << " [" << send_offsets[r] << ", +"
                        << send_counts[r] << ") outside the " << send.size() << "-byte buffer");
    TEMOE_CHECK(receive_offsets[r] + receive_counts[r] <= receive.size(),
                "rank " << rank_ << ": all_to_all_v receive block " << r << " [" << receive_offsets[r] << ", +"
                        << receive_counts[r] << ") outside the " << receive.size() << "-byte buffer");
    send_count[r] = to_int(send_counts[r], "all_to_all_v block", rank_);
    send_offset[r] = to_int(send_offsets[r], "all_to_all_v offset", rank_);
    receive_count[r] = to_int(receive_counts[r], "all_to_all_v block", rank_);
    receive_offset[r] = to_int(receive_offsets[r], "all_to_all_v offset", rank_);
  }
  check_mpi(MPI_Alltoallv(send.data(), send_count.data(), send_offset.data(), MPI_BYTE, receive.data(),
                          receive_count.data(), receive_offset.data(), MPI_BYTE, communicator_),
            "MPI_Alltoallv", rank_);
}

void MpiCommunicator::all_to_all_v_sized_by_senders(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                                    std::span<const size_t> send_offsets, const PlaceReceived& place) {
  // Every rank sends every rank one message (empty ones too), probes each source's message for its
  // size, lets the caller place the blocks, then receives them: the sizes travel in the envelopes
  // and the only waits are the ones the data itself needs. Messages from one source match in the
  // order they were sent, so consecutive calls cannot mix.
  constexpr int kTag = 1;
  const auto ranks = static_cast<size_t>(size_);
  TEMOE_CHECK(send_counts.size() == ranks && send_offsets.size() == ranks,
              "rank " << rank_ << ": all_to_all_v_sized_by_senders needs " << ranks << " send counts and offsets");
  for (size_t r = 0; r < ranks; ++r) {
    TEMOE_CHECK(send_offsets[r] + send_counts[r] <= send.size(),
                "rank " << rank_ << ": all_to_all_v_sized_by_senders send block " << r << " [" << send_offsets[r] << ", +"
                        << send_counts[r] << ") outside the " << send.size() << "-byte buffer");
  }
  std::vector<MPI_Request> requests(2 * ranks, MPI_REQUEST_NULL);
  for (size_t r = 0; r < ranks; ++r) {
    check_mpi(MPI_Isend(send.data() + send_offsets[r], to_int(send_counts[r], "all_to_all_v_sized_by_senders block", rank_),
                        MPI_BYTE, static_cast<int>(r), kTag, exchange_communicator_, &requests[r]),
              "MPI_Isend", rank_);
  }
  std::vector<MPI_Message> messages(ranks, MPI_MESSAGE_NULL);
  std::vector<size_t> receive_counts(ranks);
  for (size_t r = 0; r < ranks; ++r) {
    MPI_Status status;
    check_mpi(MPI_Mprobe(static_cast<int>(r), kTag, exchange_communicator_, &messages[r], &status), "MPI_Mprobe", rank_);
    int count = 0;
    check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count", rank_);
    receive_counts[r] = static_cast<size_t>(count);
  }
  const ReceivePlacement placement = place(receive_counts);
  TEMOE_CHECK(placement.offsets.size() == ranks,
              "rank " << rank_ << ": all_to_all_v_sized_by_senders placed " << placement.offsets.size() << " blocks of "
                      << ranks);
  for (size_t r = 0; r < ranks; ++r) {
    TEMOE_CHECK(placement.offsets[r] + receive_counts[r] <= placement.buffer.size(),
                "rank " << rank_ << ": all_to_all_v_sized_by_senders receive block " << r << " [" << placement.offsets[r]
                        << ", +" << receive_counts[r] << ") outside the " << placement.buffer.size() << "-byte buffer");
    check_mpi(MPI_Imrecv(placement.buffer.data() + placement.offsets[r], static_cast<int>(receive_counts[r]), MPI_BYTE,
                         &messages[r], &requests[ranks + r]),
              "MPI_Imrecv", rank_);
  }
  check_mpi(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall", rank_);
}

std::vector<size_t> MpiCommunicator::exchange_with_peers(std::span<const std::byte> send, std::span<const size_t> send_counts,
                                                         std::span<const size_t> send_offsets, std::span<const uint8_t> send_to,
                                                         std::span<std::byte> receive, std::span<const size_t> receive_bounds,
                                                         std::span<const size_t> receive_offsets) {
  // Receives are posted first, each with the agreed bound as its size: a message may be shorter,
  // and MPI reports its length on completion, so no probe and no counts step is needed. A tag of
  // its own keeps these messages apart from all_to_all_v_sized_by_senders' on the same pairs.
  constexpr int kTag = 2;
  const auto ranks = static_cast<size_t>(size_);
  TEMOE_CHECK(send_counts.size() == ranks && send_offsets.size() == ranks && send_to.size() == ranks &&
                  receive_bounds.size() == ranks && receive_offsets.size() == ranks,
              "rank " << rank_ << ": exchange_with_peers needs " << ranks << " counts, offsets and flags per side");
  std::vector<MPI_Request> requests(2 * ranks, MPI_REQUEST_NULL);
  for (size_t r = 0; r < ranks; ++r) {
    if (receive_bounds[r] == 0) continue;
    TEMOE_CHECK(receive_offsets[r] + receive_bounds[r] <= receive.size(),
                "rank " << rank_ << ": exchange_with_peers receive block " << r << " [" << receive_offsets[r] << ", +"
                        << receive_bounds[r] << ") outside the " << receive.size() << "-byte buffer");
    check_mpi(MPI_Irecv(receive.data() + receive_offsets[r], to_int(receive_bounds[r], "exchange_with_peers bound", rank_),
                        MPI_BYTE, static_cast<int>(r), kTag, exchange_communicator_, &requests[ranks + r]),
              "MPI_Irecv", rank_);
  }
  for (size_t r = 0; r < ranks; ++r) {
    if (!send_to[r]) {
      TEMOE_CHECK(send_counts[r] == 0, "rank " << rank_ << ": exchange_with_peers has " << send_counts[r]
                                                << " bytes for rank " << r << ", which is not an agreed peer");
      continue;
    }
    TEMOE_CHECK(send_offsets[r] + send_counts[r] <= send.size(),
                "rank " << rank_ << ": exchange_with_peers send block " << r << " [" << send_offsets[r] << ", +"
                        << send_counts[r] << ") outside the " << send.size() << "-byte buffer");
    check_mpi(MPI_Isend(send.data() + send_offsets[r], to_int(send_counts[r], "exchange_with_peers block", rank_), MPI_BYTE,
                        static_cast<int>(r), kTag, exchange_communicator_, &requests[r]),
              "MPI_Isend", rank_);
  }
  std::vector<MPI_Status> statuses(2 * ranks);
  // A message longer than its bound fails here (MPI_ERR_TRUNCATE) with this rank's number.
  check_mpi(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), statuses.data()), "MPI_Waitall", rank_);
  std::vector<size_t> received(ranks, 0);
  for (size_t r = 0; r < ranks; ++r) {
    if (receive_bounds[r] == 0) continue;
    int count = 0;
    check_mpi(MPI_Get_count(&statuses[ranks + r], MPI_BYTE, &count), "MPI_Get_count", rank_);
    received[r] = static_cast<size_t>(count);
  }
  return received;
}

void MpiCommunicator::all_to_all(std::span<const std::byte> send, std::span<std::byte> receive, size_t block) {
  const size_t total = block * static_cast<size_t>(size_);
  TEMOE_CHECK(send.size() >= total && receive.size() >= total,
              "rank " << rank_ << ": all_to_all of " << block << "-byte blocks over " << size_ << " ranks needs "
                      << total << " bytes, buffers hold " << send.size() << " and " << receive.size());
  check_mpi(MPI_Alltoall(send.data(), to_int(block, "all_to_all block", rank_), MPI_BYTE, receive.data(),
                         static_cast<int>(block), MPI_BYTE, communicator_),
            "MPI_Alltoall", rank_);
}

void MpiCommunicator::broadcast(std::span<std::byte> bytes, int root) {
  check_mpi(MPI_Bcast(bytes.data(), to_int(bytes.size(), "broadcast", rank_), MPI_BYTE, root, communicator_),
            "MPI_Bcast", rank_);
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(communicator_), "MPI_Barrier", rank_); }

void MpiCommunicator::send(std::span<const std::byte> bytes, int destination, int tag) {
  check_mpi(MPI_Send(bytes.data(), to_int(bytes.size(), "send", rank_), MPI_BYTE, destination, tag, communicator_),
            "MPI_Send", rank_);
}

void MpiCommunicator::receive(std::span<std::byte> bytes, int source, int tag) {
  MPI_Status status;
  check_mpi(MPI_Recv(bytes.data(), to_int(bytes.size(), "receive", rank_), MPI_BYTE, source, tag, communicator_,
                     &status),
            "MPI_Recv", rank_);
  int received = 0;
  MPI_Get_count(&status, MPI_BYTE, &received);
  TEMOE_CHECK(static_cast<size_t>(received) == bytes.size(),
              "rank " << rank_ << ": expected " << bytes.size() << " bytes from rank " << source << ", got " << received);
}

std::vector<std::byte> MpiCommunicator::gather_v(std::span<const std::byte> bytes, int root) {
  const int count = to_int(bytes.size(), "gather_v", rank_);
  std::vector<int> counts(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
  check_mpi(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, root, communicator_), "MPI_Gather", rank_);
  std::vector<std::byte> gathered;
  if (rank_ == root) {
    size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[static_cast<size_t>(r)] = to_int(total, "gather_v offset", rank_);
      total += static_cast<size_t>(counts[static_cast<size_t>(r)]);
    }
    gathered.resize(total);
  }
  check_mpi(MPI_Gatherv(bytes.data(), count, MPI_BYTE, gathered.data(), counts.data(), offsets.data(), MPI_BYTE, root,
                        communicator_),
            "MPI_Gatherv", rank_);
  return gathered;
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm part = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(communicator_, color, key, &part), "MPI_Comm_split", rank_);
  return std::unique_ptr<Communicator>(new MpiCommunicator(part, Adopt{}));
}

}  // namespace temoe
