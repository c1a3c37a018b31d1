#include "parallel/token_dispatcher.hpp"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::vector<size_t> exclusive_prefix_sum(const std::vector<size_t>& counts) {
  std::vector<size_t> offsets(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) offsets[i] = offsets[i - 1] + counts[i - 1];
  return offsets;
}

// The first `rows` rows of `workspace`, regrown (with headroom) when it is too small.
Tensor workspace_rows(Tensor& workspace, int64_t rows, int64_t width) {
  if (!workspace.defined() || workspace.dim(0) < rows || workspace.dim(1) != width) {
    workspace = Tensor({std::max<int64_t>(rows + rows / 4, 1), width});
  }
  return workspace.rows(0, rows);
}

}  // namespace

TokenDispatcher::TokenDispatcher(Communicator& expert_parallel, ExpertPlacement placement)
    : communicator_(expert_parallel), placement_(std::move(placement)) {
  TEMOE_CHECK(placement_.ep_size() == communicator_.size(),
              "rank " << communicator_.rank() << ": expert placement over " << placement_.ep_size()
                      << " ranks, but the expert-parallel group has " << communicator_.size());
  statistics_.reset(communicator_.size());
}

void TokenDispatcher::dispatch(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
                               const LocalExpertFunction& apply, DispatchTape* tape) {
  if (barrier_before_exchange_) communicator_.barrier();
  const auto start = Clock::now();
  const int ranks = communicator_.size(), me = communicator_.rank();
  const int64_t tokens = hidden.dim(0), width = hidden.dim(1);
  TEMOE_CHECK(static_cast<int64_t>(experts.size()) == tokens * top_k,
              "rank " << me << ": " << experts.size() << " expert ids for " << tokens << " tokens x k = " << top_k);
  check_shape(slots, {tokens * top_k, width}, "dispatch slots");
  // A row is D floats followed by k int32 expert ids (-1 where unused), sent as raw bytes.
  const size_t row_bytes = static_cast<size_t>(width + top_k) * 4;
  const size_t result_bytes = static_cast<size_t>(width) * 4;

  // 1. Plan: rows per destination in token order; `slot_order[r]` lists the slots whose results
  //    rank r returns, in the order it will return them.
  std::vector<std::vector<int32_t>> row_tokens(static_cast<size_t>(ranks));
  std::vector<std::vector<int32_t>> row_experts(static_cast<size_t>(ranks));
  std::vector<std::vector<int32_t>> slot_order(static_cast<size_t>(ranks));
  for (int64_t token = 0; token < tokens; ++token) {
    for (int destination = 0; destination < ranks; ++destination) {
      int used = 0;
      for (int64_t s = 0; s < top_k; ++s) {
        const int32_t expert = experts[static_cast<size_t>(token * top_k + s)];
        TEMOE_CHECK(expert >= 0 && expert < placement_.num_experts(),
                    "rank " << me << ": expert id " << expert << " outside [0, " << placement_.num_experts() << ")");
        if (placement_.owner(expert) != destination) continue;
        if (used == 0) {
          row_tokens[static_cast<size_t>(destination)].push_back(static_cast<int32_t>(token));
          row_experts[static_cast<size_t>(destination)].insert(row_experts[static_cast<size_t>(destination)].end(),
                                                               static_cast<size_t>(top_k), -1);
        }
        row_experts[static_cast<size_t>(destination)][row_experts[static_cast<size_t>(destination)].size() -
                                                      static_cast<size_t>(top_k) + static_cast<size_t>(used)] = expert;
        slot_order[static_cast<size_t>(destination)].push_back(static_cast<int32_t>(token * top_k + s));
        ++used;
      }
    }
  }

  // 2. Counts: rows each rank will receive from each other rank.
  std::vector<int64_t> send_rows(static_cast<size_t>(ranks)), receive_rows(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) send_rows[static_cast<size_t>(r)] = static_cast<int64_t>(row_tokens[static_cast<size_t>(r)].size());
  communicator_.all_to_all(std::as_bytes(std::span<const int64_t>(send_rows)), std::as_writable_bytes(std::span<int64_t>(receive_rows)),
                           sizeof(int64_t));
  ++statistics_.counts_exchanges;

  std::vector<size_t> send_counts(static_cast<size_t>(ranks)), receive_counts(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    send_counts[static_cast<size_t>(r)] = static_cast<size_t>(send_rows[static_cast<size_t>(r)]) * row_bytes;
    receive_counts[static_cast<size_t>(r)] = static_cast<size_t>(receive_rows[static_cast<size_t>(r)]) * row_bytes;
  }
  const auto send_offsets = exclusive_prefix_sum(send_counts), receive_offsets = exclusive_prefix_sum(receive_counts);
  send_buffer_.resize(send_offsets.back() + send_counts.back());
  receive_buffer_.resize(receive_offsets.back() + receive_counts.back());
  std::vector<std::byte>& send_buffer = send_buffer_;
  std::vector<std::byte>& receive_buffer = receive_buffer_;
  const float* hidden_data = hidden.data();
  for (int r = 0; r < ranks; ++r) {
    std::byte* cursor = send_buffer.data() + send_offsets[static_cast<size_t>(r)];
    const auto& tokens_to_r = row_tokens[static_cast<size_t>(r)];
    for (size_t row = 0; row < tokens_to_r.size(); ++row) {
      std::memcpy(cursor, hidden_data + static_cast<int64_t>(tokens_to_r[row]) * width, static_cast<size_t>(width) * 4);
      std::memcpy(cursor + width * 4, row_experts[static_cast<size_t>(r)].data() + row * static_cast<size_t>(top_k),
                  static_cast<size_t>(top_k) * 4);
      cursor += row_bytes;
    }
  }
  communicator_.all_to_all_v(send_buffer, send_counts, send_offsets, receive_buffer, receive_counts, receive_offsets);

  // 3. Unpack into [R, D] and group (row, expert) pairs by local expert. Pairs are numbered in
  //    (source rank, row, position) order, which is the order results go back in.
  int64_t received = 0;
  for (int64_t count : receive_rows) received += count;
  Tensor input = workspace_rows(input_workspace_, received, width);
  std::vector<std::vector<int32_t>> expert_rows(static_cast<size_t>(placement_.num_experts() / ranks));
  std::vector<std::vector<int32_t>> expert_pairs(expert_rows.size());
  std::vector<size_t> return_counts(static_cast<size_t>(ranks), 0);
  int32_t pair = 0;
  for (int64_t row = 0, source = 0, row_in_source = 0; row < received; ++row, ++row_in_source) {
    while (row_in_source >= receive_rows[static_cast<size_t>(source)]) {
      ++source;
      row_in_source = 0;
    }
    const std::byte* cursor = receive_buffer.data() + static_cast<size_t>(row) * row_bytes;
    std::memcpy(input.data() + row * width, cursor, static_cast<size_t>(width) * 4);
    for (int64_t s = 0; s < top_k; ++s) {
      int32_t expert;
      std::memcpy(&expert, cursor + (width + s) * 4, 4);
      if (expert < 0) break;
      TEMOE_CHECK(expert < placement_.num_experts() && placement_.owner(expert) == me,
                  "rank " << me << ": received a row for expert " << expert << ", which it does not own");
      const auto local = static_cast<size_t>(placement_.local_index(expert));
      expert_rows[local].push_back(static_cast<int32_t>(row));
      expert_pairs[local].push_back(pair++);
      return_counts[static_cast<size_t>(source)] += result_bytes;
    }
  }
  statistics_.exchange_seconds += seconds_since(start);

  if (tape) {
    tape->tokens = tokens;
    tape->top_k = top_k;
    tape->width = width;
    tape->slot_order = slot_order;
    tape->pairs = pair;
    tape->pairs_from.assign(static_cast<size_t>(ranks), 0);
    for (int r = 0; r < ranks; ++r) {
      tape->pairs_from[static_cast<size_t>(r)] = static_cast<int64_t>(return_counts[static_cast<size_t>(r)] / result_bytes);
    }
    tape->input = input.clone();  // the workspace is reused by the next layer
    tape->expert_rows = expert_rows;
    tape->expert_pairs = expert_pairs;
  }

  const auto compute_start = Clock::now();
  Tensor results = workspace_rows(result_workspace_, pair, width);
  for (size_t local = 0; local < expert_rows.size(); ++local) {
    if (!expert_rows[local].empty()) apply(static_cast<int64_t>(local), input, expert_rows[local], expert_pairs[local], results);
  }
  statistics_.expert_seconds += seconds_since(compute_start);

  // 4. Results back to their tokens' ranks, then into the slots.
  if (barrier_before_exchange_) communicator_.barrier();
  const auto return_start = Clock::now();
  std::vector<size_t> back_counts(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) back_counts[static_cast<size_t>(r)] = slot_order[static_cast<size_t>(r)].size() * result_bytes;
  const auto return_offsets = exclusive_prefix_sum(return_counts), back_offsets = exclusive_prefix_sum(back_counts);
  back_buffer_.resize(back_offsets.back() + back_counts.back());
  std::vector<std::byte>& back_buffer = back_buffer_;
  communicator_.all_to_all_v(std::as_bytes(std::span<const float>(results.data(), static_cast<size_t>(results.numel()))),
                             return_counts, return_offsets, back_buffer, back_counts, back_offsets);
  float* slot_data = slots.data();
  for (int r = 0; r < ranks; ++r) {
    const std::byte* cursor = back_buffer.data() + back_offsets[static_cast<size_t>(r)];
    for (const int32_t slot : slot_order[static_cast<size_t>(r)]) {
      std::memcpy(slot_data + static_cast<int64_t>(slot) * width, cursor, result_bytes);
      cursor += result_bytes;
    }
  }

  // Traffic bookkeeping: what this rank sent, split into remote and local.
  ++statistics_.layer_calls;
  statistics_.tokens += tokens;
  int64_t peers = 0;
  for (int r = 0; r < ranks; ++r) {
    const auto out = static_cast<int64_t>(send_counts[static_cast<size_t>(r)]);
    const auto back = static_cast<int64_t>(return_counts[static_cast<size_t>(r)]);
    statistics_.bytes_received +=
        static_cast<int64_t>(receive_counts[static_cast<size_t>(r)] + back_counts[static_cast<size_t>(r)]);
    statistics_.bytes_to_rank[static_cast<size_t>(r)] += out;
    statistics_.return_bytes_to_rank[static_cast<size_t>(r)] += back;
    if (r == me) {
      statistics_.local_bytes += out + back;
      continue;
    }
    statistics_.remote_bytes_sent += out + back;
    statistics_.messages += (out > 0) + (back > 0);
    peers += (out > 0 || back > 0 || receive_counts[static_cast<size_t>(r)] > 0 || back_counts[static_cast<size_t>(r)] > 0);
  }
  statistics_.peers += peers;
  if (statistics_.record_calls) {
    statistics_.call_dispatch_bytes.emplace_back(send_counts.begin(), send_counts.end());
    statistics_.call_return_bytes.emplace_back(return_counts.begin(), return_counts.end());
  }
  statistics_.exchange_seconds += seconds_since(return_start);
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

  // 1. Output gradients to the ranks that computed the outputs. Rank r numbered our pairs in the
  //    order of slot_order[r], so what arrives is already in pair order: grad_output[pair].
  std::vector<size_t> slot_counts(static_cast<size_t>(ranks)), pair_counts(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    slot_counts[static_cast<size_t>(r)] = tape.slot_order[static_cast<size_t>(r)].size() * row_bytes;
    pair_counts[static_cast<size_t>(r)] = static_cast<size_t>(tape.pairs_from[static_cast<size_t>(r)]) * row_bytes;
  }
  const auto slot_offsets = exclusive_prefix_sum(slot_counts), pair_offsets = exclusive_prefix_sum(pair_counts);
  send_buffer_.resize(slot_offsets.back() + slot_counts.back());
  const float* grad_data = grad_slots.data();
  for (int r = 0; r < ranks; ++r) {
    std::byte* cursor = send_buffer_.data() + slot_offsets[static_cast<size_t>(r)];
    for (const int32_t slot : tape.slot_order[static_cast<size_t>(r)]) {
      std::memcpy(cursor, grad_data + static_cast<int64_t>(slot) * width, row_bytes);
      cursor += row_bytes;
    }
  }
  Tensor grad_output = workspace_rows(grad_output_workspace_, tape.pairs, width);
  communicator_.all_to_all_v(send_buffer_, slot_counts, slot_offsets,
                             std::as_writable_bytes(std::span<float>(grad_output.data(), static_cast<size_t>(grad_output.numel()))),
                             pair_counts, pair_offsets);

  // 2. The local experts' backward, pair by pair.
  Tensor grad_input = workspace_rows(grad_input_workspace_, tape.pairs, width);
  for (size_t local = 0; local < tape.expert_rows.size(); ++local) {
    if (tape.expert_rows[local].empty()) continue;
    apply_backward(static_cast<int64_t>(local), tape.input, tape.expert_rows[local], tape.expert_pairs[local], grad_output,
                   grad_input);
  }

  // 3. Input gradients back along the forward's path, one row per (token, slot).
  back_buffer_.resize(slot_offsets.back() + slot_counts.back());
  communicator_.all_to_all_v(std::as_bytes(std::span<const float>(grad_input.data(), static_cast<size_t>(grad_input.numel()))),
                             pair_counts, pair_offsets, back_buffer_, slot_counts, slot_offsets);
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
