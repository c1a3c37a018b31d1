#pragma once
// The measures of DESIGN.md section 1 for one layer over a batch of sequences (sums, so that ranks
// can add theirs up before dividing):
//   switch rate: fraction of (token, layer) pairs, t >= 1, whose mask changed from the previous
//                token (for plain top-k routing: whose top-k set changed);
//   option duration: tokens per held option (a new option at t = 0 and at every switch);
//   experts loaded: |w_t minus w_{t-1}| summed over switches (what an offloading server fetches);
//   distinct masks used; utilisation entropy of the experts the router actually used.
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "src/learner/mask_policy.hpp"

namespace temoe {

struct RoutingCounts {
  double transitions = 0;     // positions with t >= 1
  double switches = 0;
  double options = 0;         // option segments (starts at t = 0 and at each switch)
  double tokens = 0;
  double experts_loaded = 0;  // over all switches: experts in the new set that the previous lacked
  std::vector<double> expert_uses;  // [E] slots routed to each expert
  std::set<std::vector<int32_t>> distinct_masks;

  void add(const RoutingCounts& other);
  double switch_rate() const { return transitions > 0 ? switches / transitions : 0.0; }
  double mean_option_duration() const { return options > 0 ? tokens / options : 0.0; }
  double experts_loaded_per_switch() const { return switches > 0 ? experts_loaded / switches : 0.0; }
  double utilization_entropy() const;  // nats
};

// Counts for held masks (a policy's decisions) plus the router's chosen experts [N, k].
RoutingCounts count_masked_routing(const LayerDecisions& decisions, std::span<const int32_t> chosen_experts,
                                   int64_t batch, int64_t time, int64_t num_experts, int64_t top_k);
// Counts for plain top-k routing: the "mask" is the top-k set itself.
RoutingCounts count_top_k_routing(std::span<const int32_t> chosen_experts, int64_t batch, int64_t time,
                                  int64_t num_experts, int64_t top_k);

}  // namespace temoe
