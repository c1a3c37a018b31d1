#pragma once
// Token-mode expert dispatch over an expert-parallel group (the baseline every later improvement
// is measured against). Per MoE layer call:
//   1. route: each token goes once to every rank that owns at least one of its k experts, carrying
//      the ids of the experts it needs there;
//   2. exchange row counts (a fixed-size all-to-all), then the rows (all-to-all-v);
//   3. each rank runs its local experts as grouped GEMMs over the rows it received;
//   4. results go back (all-to-all-v) into one output row per (token, slot).
// The combine that follows sums slots in slot order, so the result does not depend on how many
// ranks took part. Ranks with zero tokens still join every collective.
#include <cstdint>
#include <functional>
#include <span>

#include "parallel/communicator.hpp"
#include "parallel/dispatch_statistics.hpp"
#include "parallel/expert_placement.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

// Computes local expert `local_expert` on rows `rows` of `input` ([R, D]) and writes the results
// to rows `output_rows` of `output` ([pairs, D]).
using LocalExpertFunction = std::function<void(int64_t local_expert, const Tensor& input, std::span<const int32_t> rows,
                                               std::span<const int32_t> output_rows, Tensor& output)>;

class TokenDispatcher {
 public:
  TokenDispatcher(Communicator& expert_parallel, ExpertPlacement placement);

  // hidden: [N, D] host tensor; experts: N * k global ids; slots: [N * k, D] receives the
  // expert output of every (token, slot).
  void dispatch(const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
                const LocalExpertFunction& apply);

  const DispatchStatistics& statistics() const { return statistics_; }
  void reset_statistics(bool record_calls = false) { statistics_.reset(communicator_.size(), record_calls); }
  const ExpertPlacement& placement() const { return placement_; }
  int rank() const { return communicator_.rank(); }
  // Benchmarks set this so that the time charged to the exchange excludes waiting for ranks that
  // are still computing the previous layer (load skew is real, but it is not the dispatcher's).
  void set_barrier_before_exchange(bool enabled) { barrier_before_exchange_ = enabled; }

 private:
  Communicator& communicator_;
  ExpertPlacement placement_;
  DispatchStatistics statistics_;
  bool barrier_before_exchange_ = false;
  // Buffers kept across calls: fresh megabyte-sized allocations cost a page fault per 4 KiB on
  // every layer, which measured several times the all-to-all itself.
  std::vector<std::byte> send_buffer_, receive_buffer_, back_buffer_;
  Tensor input_workspace_, result_workspace_;
};

}  // namespace temoe
