#include "parallel/token_dispatcher.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "src/core/error.hpp"
#include "src/tensor/device_memory.hpp"

namespace temoe {

namespace {

using Clock = std::chrono::steady_clock;

// Adds the time since the previous mark to a phase and moves the mark.
class PhaseClock {
 public:
  PhaseClock() : mark_(Clock::now()) {}
  void restart() { mark_ = Clock::now(); }
  void lap(double& phase) {
    const auto now = Clock::now();
    phase += std::chrono::duration<double>(now - mark_).count();
    mark_ = now;
  }

 private:
  Clock::time_point mark_;
};

// Minor page faults of the calling thread so far.
int64_t minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

std::vector<size_t> exclusive_prefix_sum(const std::vector<size_t>& counts) {
  std::vector<size_t> offsets(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) offsets[i] = offsets[i - 1] + counts[i - 1];
  return offsets;
}

// The first `rows` rows of `workspace` (in `device`'s memory), regrown (with headroom) when it is
// too small.
Tensor workspace_rows(Tensor& workspace, int64_t rows, int64_t width, Device device = Device::cpu) {
  if (!workspace.defined() || workspace.dim(0) < rows || workspace.dim(1) != width || workspace.device() != device) {
    workspace = Tensor({std::max<int64_t>(rows + rows / 4, 1), width}, device);
  }
  return workspace.rows(0, rows);
}

// Device buffers are byte blocks of floats: `rows` x `width` floats starting `byte_offset` bytes
// into a flat [F, 1] tensor (offsets are whole floats: rows and ids are 4 bytes each).
Tensor rows_at(const Tensor& flat, size_t byte_offset, int64_t rows, int64_t width) {
  const auto first = static_cast<int64_t>(byte_offset / 4);
  return flat.rows(first, first + rows * width).reshaped({rows, width});
}

std::span<const std::byte> bytes_of(const Tensor& tensor) {
  return std::as_bytes(std::span<const float>(tensor.data(), static_cast<size_t>(tensor.numel())));
}
std::span<std::byte> writable_bytes_of(Tensor& tensor) {
  return std::as_writable_bytes(std::span<float>(tensor.data(), static_cast<size_t>(tensor.numel())));
}

// Rows of width `width` floats that `count` int32 ids take up (rounded up).
int64_t id_rows(int64_t count, int64_t width) { return (count + width - 1) / width; }

}  // namespace

TokenDispatcher::TokenDispatcher(Communicator& expert_parallel, ExpertPlacement placement)
    : communicator_(expert_parallel), placement_(std::move(placement)) {
  TEMOE_CHECK(placement_.ep_size() == communicator_.size(),
              "rank " << communicator_.rank() << ": expert placement over " << placement_.ep_size()
                      << " ranks, but the expert-parallel group has " << communicator_.size());
  statistics_.reset(communicator_.size());
}

void TokenDispatcher::use_device_transport(Communicator& device_group, Backend& backend) {
  TEMOE_CHECK(device_group.size() == communicator_.size() && device_group.rank() == communicator_.rank(),
              "rank " << communicator_.rank() << ": a device communicator of " << device_group.size() << " ranks (this rank "
                      << device_group.rank() << ") for an expert-parallel group of " << communicator_.size());
  device_communicator_ = &device_group;
  device_backend_ = &backend;
}

Communicator& TokenDispatcher::data_channel(Device device) {
  if (device == Device::cpu) return communicator_;
  TEMOE_CHECK(device_communicator_ != nullptr,
              "rank " << communicator_.rank() << ": hidden states on " << to_string(device)
                      << " need a device communicator (NCCL) for the exchange; the dispatcher has none "
                         "(TokenDispatcher::use_device_transport)");
  return *device_communicator_;
}

void TokenDispatcher::plan(std::span<const int32_t> experts, int64_t tokens, int64_t top_k) {
  const int ranks = communicator_.size(), me = communicator_.rank();
  const auto k = static_cast<size_t>(top_k);
  // Pass 1: the owner of every slot, and rows and slots per destination. A token sends one row to
  // each distinct owner among its k experts: the first slot with that owner opens the row.
  slot_owner_.resize(experts.size());
  rows_to_.assign(static_cast<size_t>(ranks), 0);
  slots_to_.assign(static_cast<size_t>(ranks), 0);
  for (size_t token = 0; token < static_cast<size_t>(tokens); ++token) {
    for (size_t s = 0; s < k; ++s) {
      const int32_t expert = experts[token * k + s];
      TEMOE_CHECK(expert >= 0 && expert < placement_.num_experts(),
                  "rank " << me << ": expert id " << expert << " outside [0, " << placement_.num_experts() << ")");
      const int owner = placement_.owner(expert);
      slot_owner_[token * k + s] = owner;
      bool opens_row = true;
      for (size_t before = 0; before < s && opens_row; ++before) opens_row = slot_owner_[token * k + before] != owner;
      rows_to_[static_cast<size_t>(owner)] += opens_row;
      ++slots_to_[static_cast<size_t>(owner)];
    }
  }
  // Pass 2 (a counting sort by destination, stable in token order): the token of every row, its
  // expert ids (-1 where unused), and the slots in the order their results come back.
  row_begin_.assign(static_cast<size_t>(ranks) + 1, 0);
  slot_begin_.assign(static_cast<size_t>(ranks) + 1, 0);
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
    row_begin_[r + 1] = row_begin_[r] + rows_to_[r];
    slot_begin_[r + 1] = slot_begin_[r] + slots_to_[r];
  }
  row_token_.resize(static_cast<size_t>(row_begin_.back()));
  row_experts_.assign(static_cast<size_t>(row_begin_.back()) * k, -1);
  slot_order_.resize(static_cast<size_t>(slot_begin_.back()));
  next_row_.assign(row_begin_.begin(), row_begin_.end() - 1);
  next_slot_.assign(slot_begin_.begin(), slot_begin_.end() - 1);
  for (size_t token = 0; token < static_cast<size_t>(tokens); ++token) {
    for (size_t s = 0; s < k; ++s) {
      const auto owner = static_cast<size_t>(slot_owner_[token * k + s]);
      size_t position = 0;  // this slot's position among the token's slots with the same owner
      for (size_t before = 0; before < s; ++before) position += static_cast<size_t>(slot_owner_[token * k + before]) == owner;
      if (position == 0) row_token_[static_cast<size_t>(next_row_[owner]++)] = static_cast<int32_t>(token);
      row_experts_[static_cast<size_t>(next_row_[owner] - 1) * k + position] = experts[token * k + s];
      slot_order_[static_cast<size_t>(next_slot_[owner]++)] = static_cast<int32_t>(token * k + s);
    }
  }
}

HeldSendPlan& TokenDispatcher::agree_held_plan(const HeldMasksView& held, std::span<const int32_t> experts, int64_t tokens,
                                               int64_t top_k) {
  const int ranks = communicator_.size(), me = communicator_.rank();
  const int64_t num_experts = placement_.num_experts();
  TEMOE_CHECK(held.layer >= 0, "rank " << me << ": option-mode dispatch needs a layer index, got " << held.layer);
  TEMOE_CHECK(static_cast<int64_t>(held.flags.size()) == tokens * num_experts,
              "rank " << me << ": " << held.flags.size() << " held-mask flags for " << tokens << " tokens x " << num_experts
                      << " experts");
  for (int64_t token = 0; token < tokens; ++token) {
    for (int64_t s = 0; s < top_k; ++s) {
      const int32_t expert = experts[static_cast<size_t>(token * top_k + s)];
      TEMOE_CHECK(held.flags[static_cast<size_t>(token * num_experts + expert)],
                  "rank " << me << ": layer " << held.layer << " token " << token << " is routed to expert " << expert
                          << ", which its held mask does not contain");
    }
  }
  if (held_plans_.size() <= static_cast<size_t>(held.layer)) held_plans_.resize(static_cast<size_t>(held.layer) + 1);
  HeldSendPlan& held_plan = held_plans_[static_cast<size_t>(held.layer)];
  statistics_.plan_rebuilds += held_plan.update(held.flags, tokens, placement_);
  // Whether any rank's bounds grew: one flag, reduced. Only then are the bounds exchanged.
  int64_t disagree = held_plan.needs_agreement(me);
  communicator_.all_reduce_max(std::span<int64_t>(&disagree, 1));
  ++statistics_.plan_checks;
  if (disagree) {
    const std::vector<int64_t>& proposed = held_plan.proposed_send_bounds();
    std::vector<int64_t> receive_bounds(static_cast<size_t>(ranks));
    communicator_.all_to_all(std::as_bytes(std::span<const int64_t>(proposed)),
                             std::as_writable_bytes(std::span<int64_t>(receive_bounds)), sizeof(int64_t));
    held_plan.agree(receive_bounds);
    ++statistics_.counts_exchanges;
    ++statistics_.counts_negotiations;
  }
  for (int r = 0; r < ranks; ++r) {
    // Rows kept on this rank need no agreement: their bound is the current masks'.
    const int64_t bound = (r == me ? held_plan.proposed_send_bounds() : held_plan.send_bounds())[static_cast<size_t>(r)];
    TEMOE_CHECK(rows_to_[static_cast<size_t>(r)] <= bound, "rank " << me << ": layer " << held.layer << " routes "
                                                                    << rows_to_[static_cast<size_t>(r)] << " rows to rank " << r
                                                                    << ", above the held plan's bound of " << bound);
  }
  return held_plan;
}

void TokenDispatcher::dispatch(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
                               const LocalExpertFunction& apply, DispatchTape* tape, const HeldMasksView* held) {
  check_shape(slots, {hidden.dim(0) * top_k, hidden.dim(1)}, "dispatch slots");
  exchange(hidden, experts, top_k, apply, tape, held, &slots, nullptr);
}

void TokenDispatcher::dispatch_to_rows(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                                       SlotRows& out, const LocalExpertFunction& apply, const HeldMasksView* held) {
  exchange(hidden, experts, top_k, apply, nullptr, held, nullptr, &out);
}

void TokenDispatcher::exchange(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                               const LocalExpertFunction& apply, DispatchTape* tape, const HeldMasksView* held,
                               Tensor* slots, SlotRows* rows_out) {
  if (barrier_before_exchange_) communicator_.barrier();
  const auto start = Clock::now();
  const int64_t faults_at_start = minor_page_faults();
  PhaseClock clock;
  DispatchPhaseSeconds& phases = statistics_.phases;
  const int ranks = communicator_.size(), me = communicator_.rank();
  const auto self = static_cast<size_t>(me);
  const int64_t tokens = hidden.dim(0), width = hidden.dim(1);
  TEMOE_CHECK(static_cast<int64_t>(experts.size()) == tokens * top_k,
              "rank " << me << ": " << experts.size() << " expert ids for " << tokens << " tokens x k = " << top_k);
  const auto k = static_cast<size_t>(top_k), d = static_cast<size_t>(width);
  // On a device the same blocks live in device memory: rows are gathered there by the backend,
  // the ids (host data) are copied in and out, and NCCL moves the blocks (use_device_transport).
  const Device device = hidden.device();
  const bool on_device = device != Device::cpu;
  Communicator& channel = data_channel(device);
  // A message to a rank carries its rows' hidden states (D floats each) followed by their expert
  // ids (k int32 each, -1 where unused). Both go as raw bytes; the receiver places each source's
  // block at a row boundary of the experts' input, so the hidden states land where the experts
  // read them and nothing is copied out of a receive buffer.
  const size_t row_bytes = (d + k) * 4, result_bytes = d * 4;

  // 1. Plan: rows per destination, grouped by one counting sort.
  plan(experts, tokens, top_k);
  clock.lap(phases.plan);

  // 2. Pack: rows to other ranks into the send buffer. The own rows skip the all-to-all (below).
  std::vector<size_t> send_counts(static_cast<size_t>(ranks));
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) send_counts[r] = static_cast<size_t>(rows_to_[r]) * row_bytes;
  std::vector<size_t> wire_send_counts = send_counts;
  wire_send_counts[self] = 0;
  const auto send_offsets = exclusive_prefix_sum(wire_send_counts);
  const size_t send_bytes = send_offsets.back() + wire_send_counts.back();
  std::span<const std::byte> send_span;
  if (on_device) {
    send_span = bytes_of(workspace_rows(device_send_, static_cast<int64_t>(send_bytes / 4), 1, device));
  } else {
    send_buffer_.resize(send_bytes);
    send_span = send_buffer_;
  }
  const float* hidden_data = hidden.data();
  // One block: the rows' hidden states, then their expert ids. `flat` and `byte_offset` locate it
  // in device memory, `block` in host memory.
  const auto pack_block = [&](size_t destination, std::byte* block, Tensor* flat, size_t byte_offset) {
    const auto count = static_cast<size_t>(rows_to_[destination]);
    const int32_t* tokens_to_r = row_token_.data() + row_begin_[destination];
    const int32_t* ids = row_experts_.data() + static_cast<size_t>(row_begin_[destination]) * k;
    if (flat != nullptr) {
      if (count == 0) return;
      Tensor rows = rows_at(*flat, byte_offset, static_cast<int64_t>(count), width);
      device_backend_->gather_rows(hidden, std::span<const int32_t>(tokens_to_r, count), rows);
      copy_device_memory(device, flat->data() + byte_offset / 4 + count * d, ids, count * k * 4);
      return;
    }
    for (size_t row = 0; row < count; ++row) {
      std::memcpy(block + row * d * 4, hidden_data + static_cast<size_t>(tokens_to_r[row]) * d, d * 4);
    }
    std::memcpy(block + count * d * 4, ids, count * k * 4);
  };
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
    if (r == self) continue;
    if (on_device) {
      pack_block(r, nullptr, &device_send_, send_offsets[r]);
    } else {
      pack_block(r, send_buffer_.data() + send_offsets[r], nullptr, 0);
    }
  }
  clock.lap(phases.pack);

  // 3. The rows, each source's block received at a row boundary of the experts' input (with room
  //    for `capacity` rows from each source). Token mode: the row counts travel with the rows where
  //    the communicator allows it (MPI: in the envelopes), otherwise they are exchanged first.
  //    Option mode: only agreed peers talk, each receive sized by the held masks' bound.
  std::vector<int64_t> receive_rows(static_cast<size_t>(ranks));
  std::vector<int64_t> receive_base(static_cast<size_t>(ranks));  // first row of each source's block in `input`
  Tensor input;
  const auto layout = [&](std::span<const int64_t> capacity) {
    Communicator::ReceivePlacement placement;
    placement.offsets.resize(static_cast<size_t>(ranks));
    int64_t input_rows = 0;
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      receive_base[r] = input_rows;
      placement.offsets[r] = static_cast<size_t>(input_rows) * d * 4;
      input_rows += capacity[r] + id_rows(capacity[r] * top_k, width);
    }
    input = workspace_rows(input_workspace_, input_rows, width, device);
    placement.buffer = writable_bytes_of(input);
    return placement;
  };
  const auto rows_in = [&](size_t bytes, size_t source) {
    TEMOE_CHECK(bytes % row_bytes == 0,
                "rank " << me << ": " << bytes << " bytes from rank " << source << " are not whole " << row_bytes << "-byte rows");
    return static_cast<int64_t>(bytes / row_bytes);
  };
  const bool option = mode_ == DispatchMode::option && held != nullptr;
  std::vector<uint8_t> send_to(static_cast<size_t>(ranks), 0);
  if (option) {
    HeldSendPlan& held_plan = agree_held_plan(*held, experts, tokens, top_k);
    clock.lap(phases.plan);
    std::vector<int64_t> capacity = held_plan.receive_bounds();
    capacity[self] = rows_to_[self];
    std::vector<size_t> receive_bounds(static_cast<size_t>(ranks), 0);
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      if (r == self) continue;
      receive_bounds[r] = static_cast<size_t>(held_plan.receive_bounds()[r]) * row_bytes;
      send_to[r] = held_plan.send_bounds()[r] > 0;
    }
    const Communicator::ReceivePlacement placement = layout(capacity);
    const auto received = channel.exchange_with_peers(send_span, wire_send_counts, send_offsets, send_to, placement.buffer,
                                                      receive_bounds, placement.offsets);
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) receive_rows[r] = r == self ? rows_to_[r] : rows_in(received[r], r);
  } else {
    const auto place = [&](std::span<const size_t> counts) {
      for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) receive_rows[r] = r == self ? rows_to_[r] : rows_in(counts[r], r);
      return layout(receive_rows);
    };
    if (!channel.counts_travel_with_data()) ++statistics_.counts_exchanges;
    ++statistics_.counts_negotiations;
    channel.all_to_all_v_sized_by_senders(send_span, wire_send_counts, send_offsets, place);
    std::fill(send_to.begin(), send_to.end(), uint8_t{1});
    send_to[self] = 0;
  }
  clock.lap(phases.dispatch_exchange);
  if (on_device) {
    Tensor flat_input = input.reshaped({input.numel(), 1});
    pack_block(self, nullptr, &flat_input, static_cast<size_t>(receive_base[self] * width) * 4);
  } else {
    pack_block(self, reinterpret_cast<std::byte*>(input.data() + receive_base[self] * width), nullptr, 0);
  }
  clock.lap(phases.pack);
  std::vector<size_t> receive_counts(static_cast<size_t>(ranks));
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) receive_counts[r] = static_cast<size_t>(receive_rows[r]) * row_bytes;

  // 4. Group (row, expert) pairs by local expert. Pairs are numbered in (source rank, row,
  //    position) order, which is the order results go back in.
  const size_t local_experts = static_cast<size_t>(placement_.num_experts() / ranks);
  expert_rows_.resize(local_experts);
  expert_pairs_.resize(local_experts);
  for (size_t local = 0; local < local_experts; ++local) {
    expert_rows_[local].clear();
    expert_pairs_[local].clear();
  }
  std::vector<int64_t> pairs_from(static_cast<size_t>(ranks), 0);
  int32_t pair = 0;
  for (size_t source = 0; source < static_cast<size_t>(ranks); ++source) {
    const auto count = static_cast<size_t>(receive_rows[source]);
    const auto base = static_cast<size_t>(receive_base[source]);
    const auto* ids = reinterpret_cast<const int32_t*>(input.data() + (base + count) * d);
    std::vector<int32_t> host_ids;
    if (on_device) {  // the ids come to the host: the grouping by expert below is host logic
      host_ids.resize(count * k);
      copy_to_host(device, host_ids.data(), ids, count * k * 4);
      ids = host_ids.data();
    }
    for (size_t row = 0; row < count; ++row) {
      for (size_t s = 0; s < k; ++s) {
        int32_t expert;
        std::memcpy(&expert, ids + row * k + s, 4);
        if (expert < 0) break;
        TEMOE_CHECK(expert < placement_.num_experts() && placement_.owner(expert) == me,
                    "rank " << me << ": received a row for expert " << expert << ", which it does not own");
        const auto local = static_cast<size_t>(placement_.local_index(expert));
        expert_rows_[local].push_back(static_cast<int32_t>(base + row));
        expert_pairs_[local].push_back(pair++);
        ++pairs_from[source];
      }
    }
  }
  clock.lap(phases.unpack);
  statistics_.exchange_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  statistics_.page_faults += minor_page_faults() - faults_at_start;

  if (tape) {
    tape->tokens = tokens;
    tape->top_k = top_k;
    tape->width = width;
    tape->slot_order.assign(static_cast<size_t>(ranks), {});
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      tape->slot_order[r].assign(slot_order_.begin() + slot_begin_[r], slot_order_.begin() + slot_begin_[r + 1]);
    }
    tape->pairs = pair;
    tape->pairs_from = pairs_from;
    tape->input = input.clone();  // the workspace is reused by the next layer
    tape->expert_rows = expert_rows_;
    tape->expert_pairs = expert_pairs_;
  }

  const auto compute_start = Clock::now();
  // One buffer for the results this rank computes (rows [0, pairs), sent back from there) and the
  // results other ranks return to it (after them, by source): the combine then reads both in place,
  // this rank's own results included.
  int64_t remote_results = 0;
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) remote_results += r == self ? 0 : slots_to_[r];
  Tensor all_results = workspace_rows(result_workspace_, pair + remote_results, width, device);
  Tensor results = all_results.rows(0, pair);
  for (size_t local = 0; local < local_experts; ++local) {
    if (!expert_rows_[local].empty()) {
      apply(static_cast<int64_t>(local), input, expert_rows_[local], expert_pairs_[local], results);
    }
  }
  statistics_.expert_seconds += std::chrono::duration<double>(Clock::now() - compute_start).count();

  // 5. Results back to their tokens' ranks, then into the slots. Rank r numbered our pairs in the
  //    order of our slots for r, so what arrives from r follows that order; the pairs from this
  //    rank itself are copied from the results without going through the all-to-all.
  if (barrier_before_exchange_) communicator_.barrier();
  const auto return_start = Clock::now();
  const int64_t faults_at_return = minor_page_faults();
  clock.restart();
  std::vector<size_t> return_counts(static_cast<size_t>(ranks)), back_counts(static_cast<size_t>(ranks));
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
    return_counts[r] = static_cast<size_t>(pairs_from[r]) * result_bytes;
    back_counts[r] = static_cast<size_t>(slots_to_[r]) * result_bytes;
  }
  std::vector<size_t> wire_return_counts = return_counts, wire_back_counts = back_counts;
  wire_return_counts[self] = wire_back_counts[self] = 0;
  const auto return_offsets = exclusive_prefix_sum(return_counts), back_offsets = exclusive_prefix_sum(wire_back_counts);
  Tensor returned = all_results.rows(pair, pair + remote_results);
  const auto returned_bytes = writable_bytes_of(returned);
  const auto result_bytes_span = bytes_of(results);
  if (option) {
    // Both sides know these sizes already (the owner counted the pairs it computed, the token side
    // the slots it routed), so only the ranks with results talk, with exact sizes.
    std::vector<uint8_t> return_to(static_cast<size_t>(ranks), 0);
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) return_to[r] = wire_return_counts[r] > 0;
    const auto received = channel.exchange_with_peers(result_bytes_span, wire_return_counts, return_offsets, return_to,
                                                      returned_bytes, wire_back_counts, back_offsets);
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      TEMOE_CHECK(received[r] == wire_back_counts[r], "rank " << me << ": " << received[r] << " result bytes from rank " << r
                                                              << ", expected " << wire_back_counts[r]);
    }
  } else {
    channel.all_to_all_v(result_bytes_span, wire_return_counts, return_offsets, returned_bytes, wire_back_counts,
                         back_offsets);
  }
  clock.lap(phases.return_exchange);
  // The first row of each source's results in `all_results`.
  const auto first_row = [&](size_t r) {
    return r == self ? static_cast<int64_t>(return_offsets[self] / result_bytes)
                     : pair + static_cast<int64_t>(back_offsets[r] / result_bytes);
  };
  if (slots && on_device) {
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      const int64_t count = slot_begin_[r + 1] - slot_begin_[r];
      if (count == 0) continue;
      const Tensor from = all_results.rows(first_row(r), first_row(r) + count);
      device_backend_->scatter_rows(from, std::span<const int32_t>(slot_order_).subspan(static_cast<size_t>(slot_begin_[r]),
                                                                                         static_cast<size_t>(count)),
                                    *slots);
    }
  } else if (slots) {
    float* slot_data = slots->data();
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      const float* cursor = all_results.data() + first_row(r) * width;
      for (int64_t i = slot_begin_[r]; i < slot_begin_[r + 1]; ++i) {
        std::memcpy(slot_data + static_cast<size_t>(slot_order_[static_cast<size_t>(i)]) * d, cursor, result_bytes);
        cursor += d;
      }
    }
  } else {
    rows_out->rows = all_results;
    rows_out->row_of_slot.resize(static_cast<size_t>(tokens * top_k));
    for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
      const int64_t base = first_row(r) - slot_begin_[r];
      for (int64_t i = slot_begin_[r]; i < slot_begin_[r + 1]; ++i) {
        rows_out->row_of_slot[static_cast<size_t>(slot_order_[static_cast<size_t>(i)])] = static_cast<int32_t>(base + i);
      }
    }
  }

  // Traffic bookkeeping: what this rank sent, split into remote and local.
  ++statistics_.layer_calls;
  statistics_.tokens += tokens;
  int64_t peers = 0;
  for (size_t r = 0; r < static_cast<size_t>(ranks); ++r) {
    const auto out = static_cast<int64_t>(send_counts[r]);
    const auto back = static_cast<int64_t>(return_counts[r]);
    statistics_.bytes_received += static_cast<int64_t>(receive_counts[r] + back_counts[r]);
    statistics_.bytes_to_rank[r] += out;
    statistics_.return_bytes_to_rank[r] += back;
    if (r == self) {
      statistics_.local_bytes += out + back;
      continue;
    }
    statistics_.remote_bytes_sent += out + back;
    // Every send issued to another rank, empty ones included (they still cost a latency): token
    // mode sends rows to every rank, since its receivers learn their sizes from the messages, and
    // results to the ranks that have some; option mode only to the peers its held plan agreed.
    statistics_.messages += send_to[r] + (back > 0);
    peers += (out > 0 || back > 0 || receive_counts[r] > 0 || back_counts[r] > 0 || send_to[r]);
  }
  statistics_.peers += peers;
  if (statistics_.record_calls) {
    statistics_.call_dispatch_bytes.emplace_back(send_counts.begin(), send_counts.end());
    statistics_.call_return_bytes.emplace_back(return_counts.begin(), return_counts.end());
    statistics_.call_experts.emplace_back(experts.begin(), experts.end());
    const bool option_call = mode_ == DispatchMode::option && held != nullptr;
    statistics_.call_held_layer.push_back(option_call ? held->layer : -1);
    statistics_.call_held_flags.emplace_back();
    if (option_call) statistics_.call_held_flags.back().assign(held->flags.begin(), held->flags.end());
  }
  clock.lap(phases.combine);
  statistics_.exchange_seconds += std::chrono::duration<double>(Clock::now() - return_start).count();
  statistics_.page_faults += minor_page_faults() - faults_at_return;
}

void TokenDispatcher::dispatch_backward(const DispatchTape& tape, const Tensor& grad_slots, Tensor& grad_slot_inputs,
                                        const LocalExpertBackwardFunction& apply_backward) {
  const int ranks = communicator_.size(), me = communicator_.rank();
  const int64_t width = tape.width;
  check_shape(grad_slots, {tape.tokens * tape.top_k, width}, "dispatch_backward grad_slots");
  check_shape(grad_slot_inputs, grad_slots.shape(), "dispatch_backward grad_slot_inputs");
  TEMOE_CHECK(static_cast<int>(tape.slot_order.size()) == ranks && static_cast<int>(tape.pairs_from.size()) == ranks,
              "rank " << me << ": dispatch_backward with a tape of a " << tape.slot_order.size()
                      << "-rank dispatch in a group of " << ranks);
  const size_t row_bytes = static_cast<size_t>(width) * 4;
  const Device device = grad_slots.device();
  const bool on_device = device != Device::cpu;
  Communicator& channel = data_channel(device);

  // 1. Output gradients to the ranks that computed the outputs. Rank r numbered our pairs in the
  //    order of slot_order[r], so what arrives is already in pair order: grad_output[pair].
  std::vector<size_t> slot_counts(static_cast<size_t>(ranks)), pair_counts(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    slot_counts[static_cast<size_t>(r)] = tape.slot_order[static_cast<size_t>(r)].size() * row_bytes;
    pair_counts[static_cast<size_t>(r)] = static_cast<size_t>(tape.pairs_from[static_cast<size_t>(r)]) * row_bytes;
  }
  const auto slot_offsets = exclusive_prefix_sum(slot_counts), pair_offsets = exclusive_prefix_sum(pair_counts);
  const size_t slot_bytes = slot_offsets.back() + slot_counts.back();
  std::span<const std::byte> send_span;
  if (on_device) {
    const Tensor flat = workspace_rows(device_send_, static_cast<int64_t>(slot_bytes / 4), 1, device);
    for (int r = 0; r < ranks; ++r) {
      const auto& order = tape.slot_order[static_cast<size_t>(r)];
      if (order.empty()) continue;
      Tensor rows = rows_at(flat, slot_offsets[static_cast<size_t>(r)], static_cast<int64_t>(order.size()), width);
      device_backend_->gather_rows(grad_slots, order, rows);
    }
    send_span = bytes_of(flat);
  } else {
    send_buffer_.resize(slot_bytes);
    const float* grad_data = grad_slots.data();
    for (int r = 0; r < ranks; ++r) {
      std::byte* cursor = send_buffer_.data() + slot_offsets[static_cast<size_t>(r)];
      for (const int32_t slot : tape.slot_order[static_cast<size_t>(r)]) {
        std::memcpy(cursor, grad_data + static_cast<int64_t>(slot) * width, row_bytes);
        cursor += row_bytes;
      }
    }
    send_span = send_buffer_;
  }
  Tensor grad_output = workspace_rows(grad_output_workspace_, tape.pairs, width, device);
  channel.all_to_all_v(send_span, slot_counts, slot_offsets, writable_bytes_of(grad_output), pair_counts, pair_offsets);

  // 2. The local experts' backward, pair by pair.
  Tensor grad_input = workspace_rows(grad_input_workspace_, tape.pairs, width, device);
  for (size_t local = 0; local < tape.expert_rows.size(); ++local) {
    if (tape.expert_rows[local].empty()) continue;
    apply_backward(static_cast<int64_t>(local), tape.input, tape.expert_rows[local], tape.expert_pairs[local], grad_output,
                   grad_input);
  }

  // 3. Input gradients back along the forward's path, one row per (token, slot).
  if (on_device) {
    Tensor flat = workspace_rows(device_back_, static_cast<int64_t>(slot_bytes / 4), 1, device);
    channel.all_to_all_v(bytes_of(grad_input), pair_counts, pair_offsets, writable_bytes_of(flat), slot_counts, slot_offsets);
    for (int r = 0; r < ranks; ++r) {
      const auto& order = tape.slot_order[static_cast<size_t>(r)];
      if (order.empty()) continue;
      device_backend_->scatter_rows(rows_at(flat, slot_offsets[static_cast<size_t>(r)], static_cast<int64_t>(order.size()), width),
                                    order, grad_slot_inputs);
    }
    return;
  }
  back_buffer_.resize(slot_bytes);
  channel.all_to_all_v(bytes_of(grad_input), pair_counts, pair_offsets, back_buffer_, slot_counts, slot_offsets);
  float* result = grad_slot_inputs.data();
  for (int r = 0; r < ranks; ++r) {
    const std::byte* cursor = back_buffer_.data() + slot_offsets[static_cast<size_t>(r)];
    for (const int32_t slot : tape.slot_order[static_cast<size_t>(r)]) {
      std::memcpy(result + static_cast<int64_t>(slot) * width, cursor, row_bytes);
      cursor += row_bytes;
    }
  }
}

}  // namespace temoe
