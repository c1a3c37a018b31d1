#include "src/learner/routing_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

namespace temoe {

void RoutingCounts::add(const RoutingCounts& other) {
  transitions += other.transitions;
  switches += other.switches;
  options += other.options;
  tokens += other.tokens;
  experts_loaded += other.experts_loaded;
  if (expert_uses.size() < other.expert_uses.size()) expert_uses.resize(other.expert_uses.size(), 0.0);
  for (size_t e = 0; e < other.expert_uses.size(); ++e) expert_uses[e] += other.expert_uses[e];
  distinct_masks.insert(other.distinct_masks.begin(), other.distinct_masks.end());
}

double RoutingCounts::utilization_entropy() const {
  double total = 0, entropy = 0;
  for (double uses : expert_uses) total += uses;
  if (total <= 0) return 0.0;
  for (double uses : expert_uses) {
    if (uses > 0) entropy -= uses / total * std::log(uses / total);
  }
  return entropy;
}

namespace {

RoutingCounts count_sets(std::span<const int32_t> sets, int64_t set_size, std::span<const int32_t> chosen_experts,
                         int64_t batch, int64_t time, int64_t num_experts, int64_t top_k) {
  RoutingCounts counts;
  counts.expert_uses.assign(static_cast<size_t>(num_experts), 0.0);
  for (const int32_t expert : chosen_experts) counts.expert_uses[static_cast<size_t>(expert)] += 1;
  (void)top_k;
  std::vector<int32_t> current, previous;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < time; ++t) {
      const auto begin = sets.begin() + (b * time + t) * set_size;
      current.assign(begin, begin + set_size);
      std::sort(current.begin(), current.end());
      counts.tokens += 1;
      if (t == 0) {
        counts.options += 1;
      } else {
        counts.transitions += 1;
        if (current != previous) {
          counts.switches += 1;
          counts.options += 1;
          std::vector<int32_t> loaded;
          std::set_difference(current.begin(), current.end(), previous.begin(), previous.end(), std::back_inserter(loaded));
          counts.experts_loaded += static_cast<double>(loaded.size());
        }
      }
      counts.distinct_masks.insert(current);
      previous.swap(current);
    }
  }
  return counts;
}

}  // namespace

RoutingCounts count_masked_routing(const LayerDecisions& decisions, std::span<const int32_t> chosen_experts,
                                   int64_t batch, int64_t time, int64_t num_experts, int64_t top_k) {
  return count_sets(decisions.masks, decisions.k_hat, chosen_experts, batch, time, num_experts, top_k);
}

RoutingCounts count_top_k_routing(std::span<const int32_t> chosen_experts, int64_t batch, int64_t time,
                                  int64_t num_experts, int64_t top_k) {
  return count_sets(chosen_experts, top_k, chosen_experts, batch, time, num_experts, top_k);
}

}  // namespace temoe
