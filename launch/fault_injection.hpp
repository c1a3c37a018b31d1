#pragma once
// A hidden test hook: TEMOE_FAULT_INJECTION="RANK:LAYER" makes world rank RANK throw when it
// reaches MoE layer LAYER, so tests can prove that a failure on one rank ends the whole job with
// that rank named instead of leaving the others hanging in a collective.
#include <csignal>
#include <memory>
#include <optional>

#include "src/model/expert_executor.hpp"

namespace temoe::launch {

struct FaultPoint {
  int rank = 0;
  int64_t layer = 0;
};

std::optional<FaultPoint> fault_point_from_environment();

// TEMOE_NONFINITE_INJECTION="STEP[:RANK[:COUNT]]" (rank 0, 1 step by default): that rank's
// controller gradient is poisoned with a NaN at COUNT steps from STEP on, to test that such steps
// are skipped and that a run of them stops the job.
struct NonFiniteInjection {
  int64_t step = -1;
  int rank = 0;
  int64_t count = 1;
};
std::optional<NonFiniteInjection> nonfinite_injection_from_environment();

// TEMOE_STALL_INJECTION="RANK:STEP": world rank RANK stops making progress (sleeps, never exits)
// at training step STEP, as a rank stuck in a driver or a file system would; the watchdog test uses it.
std::optional<FaultPoint> stall_point_from_environment();
[[noreturn]] void stall_forever();

// TEMOE_STARTUP_PAUSE_SECONDS=N: rank 0 announces, then every rank waits up to N seconds (less if a
// stop signal arrives) before loading anything, so a test can signal the job during its start-up.
void pause_in_start_up_if_asked(int rank, const volatile std::sig_atomic_t& stop_requested);

// Wraps `inner`; throws at the fault point on `world_rank`, forwards every other call.
class FaultInjectingExperts final : public ExpertExecutor {
 public:
  FaultInjectingExperts(std::unique_ptr<ExpertExecutor> inner, FaultPoint fault, int world_rank)
      : inner_(std::move(inner)), fault_(fault), world_rank_(world_rank) {}
  void run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k, Tensor& slots,
           const std::vector<uint8_t>* held_masks) override;
  bool run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                   const std::vector<uint8_t>* held_masks, SlotRows& out) override;

 private:
  std::unique_ptr<ExpertExecutor> inner_;
  FaultPoint fault_;
  int world_rank_;
};

}  // namespace temoe::launch
