#pragma once
// Traffic and time of expert dispatch on one rank, summed over the MoE layer calls since reset.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace temoe {

// Where the exchange time goes, in seconds summed over calls; the phases add up to
// DispatchStatistics::exchange_seconds.
struct DispatchPhaseSeconds {
  double plan = 0;               // routing: rows per destination, grouped with one counting sort
  double pack = 0;               // hidden states and expert ids into the send buffer (own rows: into the input)
  double dispatch_exchange = 0;  // the all-to-all-v of the rows, with their counts (see counts_exchanges)
  double unpack = 0;             // received rows grouped by local expert (they arrive in the experts' input)
  double return_exchange = 0;    // the all-to-all-v of the results
  double combine = 0;            // results into their (token, slot) rows
};

struct DispatchStatistics {
  int64_t layer_calls = 0;         // dispatch calls (one per MoE layer and step)
  int64_t tokens = 0;              // tokens this rank routed
  int64_t remote_bytes_sent = 0;   // bytes this rank sent to other ranks (hidden states out, results back)
  int64_t local_bytes = 0;         // bytes that stayed on this rank
  int64_t bytes_received = 0;      // bytes this rank received, from itself and others
  int64_t messages = 0;            // sends to other ranks, empty ones included
  int64_t peers = 0;               // distinct other ranks exchanged with, summed over calls
  int64_t counts_exchanges = 0;    // calls that exchanged counts (token mode: a separate all-to-all of them, none
                                   // where they travel with the data; option mode: new bounds agreed)
  int64_t counts_negotiations = 0; // calls whose receivers learned their sizes from the senders: every token-mode
                                   // call (in the envelopes or not), option-mode calls that agreed new bounds
  int64_t plan_rebuilds = 0;       // option mode: calls in which a held mask switched, so the plan was recomputed
  int64_t plan_checks = 0;         // option mode: one-flag reductions asking whether any rank's bounds changed
  double exchange_seconds = 0;     // planning, counts, packing, all-to-alls and unpacking
  double expert_seconds = 0;       // the local expert FFNs
  DispatchPhaseSeconds phases;     // exchange_seconds, phase by phase
  int64_t page_faults = 0;         // minor page faults inside the exchange: first touches of fresh memory
                                   // (the caller's slots, regrown buffers), each costly in a virtual machine
  std::vector<int64_t> bytes_to_rank;       // dispatch bytes this rank sent to each rank (incl. itself)
  std::vector<int64_t> return_bytes_to_rank;  // result bytes this rank sent back to each rank
  // Per call, when recording is on (benchmarks replay these matrices through a plain all-to-all):
  bool record_calls = false;
  std::vector<std::vector<int64_t>> call_dispatch_bytes;  // [call][rank]
  std::vector<std::vector<int64_t>> call_return_bytes;    // [call][rank]
  std::vector<std::vector<int32_t>> call_experts;         // [call][N * k] the routing (to replay the call)
  std::vector<int64_t> call_held_layer;                   // [call] the held masks' layer (-1: a token-mode call)
  std::vector<std::vector<uint8_t>> call_held_flags;      // [call][N * E] the held masks (empty in token mode)

  void reset(int ranks, bool record = false);
};

}  // namespace temoe
