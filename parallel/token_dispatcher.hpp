#pragma once
// Token-mode expert dispatch over an expert-parallel group (the baseline every later improvement
// is measured against). Per MoE layer call:
//   1. route: each token goes once to every rank that owns at least one of its k experts, carrying
//      the ids of the experts it needs there;
//   2. exchange the rows (all-to-all-v), received straight into the experts' input; their counts
//      travel with them where the communicator can carry them (MPI: in the message envelopes),
//      otherwise a fixed-size all-to-all of counts goes first;
//   3. each rank runs its local experts as grouped GEMMs over the rows it received;
//   4. results go back (all-to-all-v) into one output row per (token, slot).
// A rank's rows for its own experts skip the all-to-all: they are copied once, from the hidden
// states into the experts' input, and their results once, into the slots.
// The combine that follows sums slots in slot order, so the result does not depend on how many
// ranks took part. Ranks with zero tokens still join every collective.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/dispatch_statistics.hpp"
#include "parallel/expert_placement.hpp"
#include "parallel/held_send_plan.hpp"
#include "src/tensor/backend.hpp"
#include "src/tensor/slot_rows.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

// Computes local expert `local_expert` on rows `rows` of `input` ([R, D]) and writes the results
// to rows `output_rows` of `output` ([pairs, D]).
using LocalExpertFunction = std::function<void(int64_t local_expert, const Tensor& input, std::span<const int32_t> rows,
                                               std::span<const int32_t> output_rows, Tensor& output)>;

// The backward of a LocalExpertFunction call: from the gradients of its outputs (rows
// `output_rows` of `grad_output`, [pairs, D]) to the gradients of its inputs, one per output row
// (written to rows `output_rows` of `grad_input`, [pairs, D]). Weight gradients are the callee's.
using LocalExpertBackwardFunction =
    std::function<void(int64_t local_expert, const Tensor& input, std::span<const int32_t> rows,
                       std::span<const int32_t> output_rows, const Tensor& grad_output, Tensor& grad_input)>;

// What one dispatch() did, kept for dispatch_backward(): the reverse exchange reuses the forward's
// plan (no counts exchange) and the expert owners keep the rows they computed on.
struct DispatchTape {
  int64_t tokens = 0;
  int64_t top_k = 0;
  int64_t width = 0;
  // Token side: per destination rank, the slots whose results it returned, in its order.
  std::vector<std::vector<int32_t>> slot_order;
  // Owner side: (row, expert) pairs computed here, numbered in (source rank, row, position) order.
  int64_t pairs = 0;
  std::vector<int64_t> pairs_from;                  // pairs per source rank
  Tensor input;  // [R, D] the experts' input: the rows received, by source rank (with unused rows between)
  std::vector<std::vector<int32_t>> expert_rows;    // per local expert: rows of `input`
  std::vector<std::vector<int32_t>> expert_pairs;   // per local expert: pair numbers
};

// Token mode renegotiates every call: each rank sends every rank a message (empty or not) and
// learns its receive sizes from them. Option mode (DESIGN.md section 2) is used for calls that
// carry the tokens' held masks: only the peers the masks span talk, with receive sizes bounded by
// the masks, agreed once and kept until a switch changes them (held_send_plan.hpp). Both modes
// send the same rows, and the experts see them in the same order, so outputs are bit-identical.
enum class DispatchMode { token, option };

// The held masks of one call: layer (each layer keeps its own plan) and N * E flags (1 = held).
struct HeldMasksView {
  int64_t layer = -1;
  std::span<const uint8_t> flags;
};

class TokenDispatcher {
 public:
  TokenDispatcher(Communicator& expert_parallel, ExpertPlacement placement);

  // Device hidden states (the CUDA backend's) are exchanged in device memory: through
  // `device_group` (an NCCL communicator over the same ranks, in the same order), with `backend`
  // gathering and scattering the rows. Plans, held-plan agreement and expert ids stay on the host
  // (the ids travel with the rows and are copied back, k int32 per row). Both must outlive the
  // dispatcher.
  void use_device_transport(Communicator& device_group, Backend& backend);

  // hidden: [N, D] host tensor, or a device one (use_device_transport); experts: N * k global
  // ids (host); slots: [N * k, D], where hidden is, receives the expert output of every (token, slot).
  // With `tape`, also records what the backward needs.
  // With `held` (and option mode set), the call goes through the layer's held plan; every rank of
  // the group must then pass masks for that layer (the plan is agreed collectively).
  void dispatch(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
                const LocalExpertFunction& apply, DispatchTape* tape = nullptr, const HeldMasksView* held = nullptr);

  // The same exchange, leaving the results where they landed (by source rank) instead of copying
  // them into slot order: out.rows is a view of this dispatcher's buffer, valid until its next
  // call, and out.row_of_slot says where each (token, slot) output is.
  void dispatch_to_rows(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, SlotRows& out,
                        const LocalExpertFunction& apply, const HeldMasksView* held = nullptr);

  // The all-to-all in reverse, for gradients: the gradient of every (token, slot) output
  // (grad_slots, [N * k, D]) goes to the rank that computed it, `apply_backward` turns it into the
  // gradient of that pair's input there, and those come back into grad_slot_inputs ([N * k, D],
  // row token * k + s: the gradient with respect to the hidden state the slot's expert read). The
  // caller sums a token's slots in slot order, so the result does not depend on the ranks.
  // Every rank of the group must call it, after the dispatch() that filled `tape`.
  void dispatch_backward(const DispatchTape& tape, const Tensor& grad_slots, Tensor& grad_slot_inputs,
                         const LocalExpertBackwardFunction& apply_backward);

  const DispatchStatistics& statistics() const { return statistics_; }
  void reset_statistics(bool record_calls = false) { statistics_.reset(communicator_.size(), record_calls); }
  const ExpertPlacement& placement() const { return placement_; }
  void set_mode(DispatchMode mode) { mode_ = mode; }
  DispatchMode mode() const { return mode_; }
  int rank() const { return communicator_.rank(); }
  // Benchmarks set this so that the time charged to the exchange excludes waiting for ranks that
  // are still computing the previous layer (load skew is real, but it is not the dispatcher's).
  void set_barrier_before_exchange(bool enabled) { barrier_before_exchange_ = enabled; }

 private:
  // dispatch() (into `slots`) and dispatch_to_rows() (into `rows_out`): exactly one is given.
  void exchange(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, const LocalExpertFunction& apply,
                DispatchTape* tape, const HeldMasksView* held, Tensor* slots, SlotRows* rows_out);
  // Fills the routing buffers below from the expert ids of `tokens` tokens.
  void plan(std::span<const int32_t> experts, int64_t tokens, int64_t top_k);
  // Option mode: checks the routing lies inside the held masks, updates the layer's plan and, where
  // any rank's bounds changed, agrees the new ones with every rank.
  HeldSendPlan& agree_held_plan(const HeldMasksView& held, std::span<const int32_t> experts, int64_t tokens,
                                int64_t top_k);

  // The communicator that moves blocks of `device`'s memory.
  Communicator& data_channel(Device device);

  Communicator& communicator_;
  Communicator* device_communicator_ = nullptr;  // NCCL, for device hidden states
  Backend* device_backend_ = nullptr;
  ExpertPlacement placement_;
  DispatchStatistics statistics_;
  bool barrier_before_exchange_ = false;
  DispatchMode mode_ = DispatchMode::token;
  std::vector<HeldSendPlan> held_plans_;  // per MoE layer
  // Buffers kept across calls: fresh megabyte-sized allocations cost a page fault per 4 KiB on
  // every layer, which measured several times the all-to-all itself.
  std::vector<std::byte> send_buffer_, back_buffer_;
  Tensor device_send_, device_back_;  // [bytes / 4, 1] the same in device memory
  Tensor input_workspace_, result_workspace_;
  // Routing of the current call, grouped by destination rank r (a counting sort, stable in token
  // order): rows [row_begin_[r], row_begin_[r + 1]) and slots [slot_begin_[r], slot_begin_[r + 1]).
  std::vector<int> slot_owner_;                 // [N * k] rank owning each slot's expert
  std::vector<int64_t> rows_to_, slots_to_;     // [ranks] rows and (token, slot) pairs per destination
  std::vector<int64_t> row_begin_, slot_begin_; // [ranks + 1]
  std::vector<int64_t> next_row_, next_slot_;   // [ranks] fill cursors of the counting sort
  std::vector<int32_t> row_token_;              // [rows] the token each row carries
  std::vector<int32_t> row_experts_;            // [rows * k] its expert ids, -1 where unused
  std::vector<int32_t> slot_order_;             // [N * k] slots in the order their results come back
  // Owner side: per local expert, the rows of the input it computes on and their pair numbers.
  std::vector<std::vector<int32_t>> expert_rows_, expert_pairs_;
  Tensor grad_output_workspace_, grad_input_workspace_;
};

}  // namespace temoe
