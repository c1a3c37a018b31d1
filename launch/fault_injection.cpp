#include "launch/fault_injection.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "src/core/error.hpp"

namespace temoe::launch {

std::optional<FaultPoint> fault_point_from_environment() {
  const char* value = std::getenv("TEMOE_FAULT_INJECTION");
  if (value == nullptr || *value == '\0') return std::nullopt;
  FaultPoint point;
  long long layer = 0;
  if (std::sscanf(value, "%d:%lld", &point.rank, &layer) != 2) {
    TEMOE_FAIL("TEMOE_FAULT_INJECTION='" << value << "': expected RANK:LAYER");
  }
  point.layer = layer;
  return point;
}

std::optional<NonFiniteInjection> nonfinite_injection_from_environment() {
  const char* value = std::getenv("TEMOE_NONFINITE_INJECTION");
  if (value == nullptr || *value == '\0') return std::nullopt;
  NonFiniteInjection injection;
  long long step = 0, count = 1;
  char extra = 0;
  const int fields = std::sscanf(value, "%lld:%d:%lld%c", &step, &injection.rank, &count, &extra);
  if (fields < 1 || fields > 3 || step < 0 || injection.rank < 0 || count < 1) {
    TEMOE_FAIL("TEMOE_NONFINITE_INJECTION='" << value << "': expected STEP[:RANK[:COUNT]] (STEP, RANK >= 0, COUNT >= 1)");
  }
  injection.step = step;
  injection.count = count;
  return injection;
}

std::optional<FaultPoint> stall_point_from_environment() {
  const char* value = std::getenv("TEMOE_STALL_INJECTION");
  if (value == nullptr || *value == '\0') return std::nullopt;
  FaultPoint point;
  long long step = 0;
  char extra = 0;
  if (std::sscanf(value, "%d:%lld%c", &point.rank, &step, &extra) != 2 || point.rank < 0 || step < 0) {
    TEMOE_FAIL("TEMOE_STALL_INJECTION='" << value << "': expected RANK:STEP (non-negative integers)");
  }
  point.layer = step;  // a step here, not a layer
  return point;
}

void stall_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

void pause_in_start_up_if_asked(int rank, const volatile std::sig_atomic_t& stop_requested) {
  const char* value = std::getenv("TEMOE_STARTUP_PAUSE_SECONDS");
  if (value == nullptr || *value == '\0') return;
  char* end = nullptr;
  const double seconds = std::strtod(value, &end);
  if (end == value || *end != '\0' || !(seconds >= 0)) {
    TEMOE_FAIL("TEMOE_STARTUP_PAUSE_SECONDS='" << value << "': expected a number of seconds >= 0");
  }
  if (rank == 0) {
    std::printf("temoe train: pausing up to %g s in start-up (TEMOE_STARTUP_PAUSE_SECONDS)\n", seconds);
    std::fflush(stdout);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (stop_requested == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void FaultInjectingExperts::run(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts, int64_t top_k,
                                Tensor& slots, const std::vector<uint8_t>* held_masks) {
  if (world_rank_ == fault_.rank && layer == fault_.layer) {
    TEMOE_FAIL("injected fault at MoE layer " << layer << " (TEMOE_FAULT_INJECTION)");
  }
  inner_->run(layer, hidden, experts, top_k, slots, held_masks);
}

bool FaultInjectingExperts::run_to_rows(int64_t layer, const Tensor& hidden, std::span<const int32_t> experts,
                                        int64_t top_k, const std::vector<uint8_t>* held_masks, SlotRows& out) {
  if (world_rank_ == fault_.rank && layer == fault_.layer) {
    TEMOE_FAIL("injected fault at MoE layer " << layer << " (TEMOE_FAULT_INJECTION)");
  }
  return inner_->run_to_rows(layer, hidden, experts, top_k, held_masks, out);
}

}  // namespace temoe::launch
