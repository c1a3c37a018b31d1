#pragma once
// What bench dispatch runs through each dispatch mode: teacher-forced forwards of whole sequences,
// and decode steps (one token per sequence per step after a prompt, through a KV cache). Both
// take the held masks of a policy's rollout, so token and option mode see the same tokens and,
// in option mode, the masks a controller or the greedy cache really held.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "parallel/communication_model.hpp"
#include "parallel/communicator.hpp"
#include "parallel/dispatch_statistics.hpp"
#include "src/learner/mask_policy.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe::launch {

// Runs positions [prompt, time) of every sequence one at a time after a prefill of the first
// `prompt` (tokens: row-major [batch, time]). With `decisions` (per layer, masks over all
// [batch, time] positions), each position routes inside the mask held there. `before_decode` is
// called after the prefill, so that a caller can start measuring there.
void decode_positions(MoeTransformer& model, std::span<const int32_t> tokens, int64_t batch, int64_t time,
                      int64_t prompt, const std::vector<LayerDecisions>* decisions,
                      const std::function<void()>& before_decode);

// Dispatch figures of one workload in one mode, over the whole expert-parallel group (collective).
struct ModeFigures {
  double remote_bytes_per_token = 0;   // bytes sent to other ranks (rows out and results back) per routed token
  double messages_per_step = 0;        // sends to other ranks per MoE layer call, summed over ranks
  double peers_per_step = 0;           // distinct other ranks talked to, per rank and layer call
  double seconds_per_layer = 0;        // the exchange, per layer call, on the slowest rank
  double expert_seconds_per_layer = 0; // the local experts, per layer call, on the slowest rank
  double counts_exchange_skipped_fraction = 0;  // layer calls whose receive sizes were known beforehand
  double plan_checks_per_step = 0;     // option mode: one-flag reductions per layer call
  double layer_calls = 0;
  RankTraffic rank_traffic;            // one rank's mean share of a layer call, for the cluster model

  nlohmann::json to_json() const;
};

ModeFigures summarize_dispatch(const DispatchStatistics& statistics, Communicator& world);

// Modelled seconds per MoE layer at `ranks` ranks: the measured per-rank traffic priced on
// `profile`, with the counts exchange on the calls that had one and, in option mode, the one-flag
// reduction that asks whether any plan changed.
double modelled_layer_seconds(const ModeFigures& figures, int ranks, const ClusterProfile& profile);

// Positions t >= max(from_position, 1) at which the held mask switched, and all such positions,
// over every layer and sequence of this rank.
struct SwitchCount {
  double switches = 0;
  double positions = 0;
};
SwitchCount count_switches(const std::vector<LayerDecisions>& decisions, int64_t batch, int64_t time,
                           int64_t from_position = 1);

}  // namespace temoe::launch
