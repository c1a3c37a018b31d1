#pragma once
// Traffic and time of expert dispatch on one rank, summed over the MoE layer calls since reset.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace temoe {

struct DispatchStatistics {
  int64_t layer_calls = 0;         // dispatch calls (one per MoE layer and step)
  int64_t tokens = 0;              // tokens this rank routed
  int64_t remote_bytes_sent = 0;   // bytes this rank sent to other ranks (hidden states out, results back)
  int64_t local_bytes = 0;         // bytes that stayed on this rank
  int64_t bytes_received = 0;      // bytes this rank received, from itself and others
  int64_t messages = 0;            // non-empty sends to other ranks
  int64_t peers = 0;               // distinct other ranks exchanged with, summed over calls
  int64_t counts_exchanges = 0;    // calls that exchanged counts before the data
  double exchange_seconds = 0;     // planning, counts, packing, all-to-alls and unpacking
  double expert_seconds = 0;       // the local expert FFNs
  std::vector<int64_t> bytes_to_rank;       // dispatch bytes this rank sent to each rank (incl. itself)
  std::vector<int64_t> return_bytes_to_rank;  // result bytes this rank sent back to each rank
  // Per call, when recording is on (benchmarks replay these matrices through a plain all-to-all):
  bool record_calls = false;
  std::vector<std::vector<int64_t>> call_dispatch_bytes;  // [call][rank]
  std::vector<std::vector<int64_t>> call_return_bytes;    // [call][rank]

  void reset(int ranks, bool record = false);
};

}  // namespace temoe
