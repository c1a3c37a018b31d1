#include "src/learner/baseline_policies.hpp"

#include <algorithm>
#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/learner/plackett_luce.hpp"

namespace temoe {

namespace {

LayerDecisions empty_decisions(int64_t count, int64_t k_hat) {
  LayerDecisions decisions;
  decisions.k_hat = k_hat;
  decisions.masks.resize(static_cast<size_t>(count * k_hat));
  decisions.previous_masks.resize(decisions.masks.size());
  decisions.selected_tuples.assign(decisions.masks.size(), -1);
  decisions.terminated.assign(static_cast<size_t>(count), 0);
  decisions.switched.assign(static_cast<size_t>(count), 0);
  return decisions;
}

}  // namespace

LayerDecisions FixedMaskPolicy::decide(const LayerView& view) {
  LayerDecisions decisions = empty_decisions(view.batch * view.time, k_hat_);
  for (int64_t b = 0; b < view.batch; ++b) {
    const auto mask = router_top_set(*view.router_logits, b * view.time, k_hat_);
    for (int64_t t = 0; t < view.time; ++t) record_mask(decisions, b * view.time + t, mask, mask, t == 0, false);
  }
  return decisions;
}

LayerDecisions RandomSwitchPolicy::decide(const LayerView& view) {
  TEMOE_CHECK(rates_.size() == 1 || static_cast<int64_t>(rates_.size()) > view.layer,
              "random switching: " << rates_.size() << " rates for layer " << view.layer);
  const double rate = rates_.size() == 1 ? rates_[0] : rates_[static_cast<size_t>(view.layer)];
  LayerDecisions decisions = empty_decisions(view.batch * view.time, k_hat_);
  for (int64_t b = 0; b < view.batch; ++b) {
    std::vector<int32_t> held = router_top_set(*view.router_logits, b * view.time, k_hat_);
    record_mask(decisions, b * view.time, held, held, true, false);
    for (int64_t t = 1; t < view.time; ++t) {
      CounterRandom random(seed_, {static_cast<uint64_t>(view.sequence_ids[static_cast<size_t>(b)]),
                                   static_cast<uint64_t>(view.layer), static_cast<uint64_t>(t)});
      const auto previous = held;
      const bool reload = random.uniform() < rate;
      if (reload) held = router_top_set(*view.router_logits, b * view.time + t, k_hat_);
      record_mask(decisions, b * view.time + t, held, previous, false, reload);
    }
  }
  return decisions;
}

LayerDecisions GreedyCachePolicy::decide(const LayerView& view) {
  LayerDecisions decisions = empty_decisions(view.batch * view.time, k_hat_);
  const int64_t experts = view.router_logits->dim(1);
  std::vector<double> average(static_cast<size_t>(experts));
  std::vector<float> probabilities(static_cast<size_t>(experts));
  for (int64_t b = 0; b < view.batch; ++b) {
    std::vector<int32_t> held;
    for (int64_t t = 0; t < view.time; ++t) {
      const int64_t position = b * view.time + t;
      const float* logits = view.router_logits->data() + position * experts;
      const float maximum = *std::max_element(logits, logits + experts);
      double total = 0;
      for (int64_t e = 0; e < experts; ++e) total += std::exp(double(logits[e]) - maximum);
      for (int64_t e = 0; e < experts; ++e) {
        const double p = std::exp(double(logits[e]) - maximum) / total;
        average[static_cast<size_t>(e)] = t == 0 ? p : decay_ * average[static_cast<size_t>(e)] + (1 - decay_) * p;
      }
      const auto token_top = router_top_set(*view.router_logits, position, top_k_);
      const bool covered = t > 0 && std::all_of(token_top.begin(), token_top.end(), [&](int32_t e) {
        return std::binary_search(held.begin(), held.end(), e);
      });
      const auto previous = held;
      if (!covered) {
        for (int64_t e = 0; e < experts; ++e) probabilities[static_cast<size_t>(e)] = static_cast<float>(average[static_cast<size_t>(e)]);
        held = greedy_top(probabilities, k_hat_);
        std::sort(held.begin(), held.end());
      }
      record_mask(decisions, position, held, previous, t == 0, !covered);
    }
  }
  return decisions;
}

LayerDecisions SegmentOraclePolicy::decide(const LayerView& view) {
  const int64_t count = view.batch * view.time, experts = view.router_logits->dim(1);
  TEMOE_CHECK(static_cast<int64_t>(domains_.size()) == count,
              "segment oracle: " << domains_.size() << " domain labels for " << count << " positions (set_domains first)");
  LayerDecisions decisions = empty_decisions(count, k_hat_);
  std::vector<double> uses(static_cast<size_t>(experts)), probability_mass(static_cast<size_t>(experts));
  for (int64_t b = 0; b < view.batch; ++b) {
    std::vector<int32_t> held;
    for (int64_t start = 0; start < view.time;) {
      int64_t end = start + 1;
      const int16_t domain = domains_[static_cast<size_t>(b * view.time + start)];
      while (end < view.time && domains_[static_cast<size_t>(b * view.time + end)] == domain) ++end;
      // The router's own top-k choices over the segment, ties broken by its probability mass.
      std::fill(uses.begin(), uses.end(), 0.0);
      std::fill(probability_mass.begin(), probability_mass.end(), 0.0);
      for (int64_t t = start; t < end; ++t) {
        const int64_t position = b * view.time + t;
        for (const int32_t e : router_top_set(*view.router_logits, position, top_k_)) uses[static_cast<size_t>(e)] += 1;
        const float* logits = view.router_logits->data() + position * experts;
        const float maximum = *std::max_element(logits, logits + experts);
        double total = 0;
        for (int64_t e = 0; e < experts; ++e) total += std::exp(double(logits[e]) - maximum);
        for (int64_t e = 0; e < experts; ++e) probability_mass[static_cast<size_t>(e)] += std::exp(double(logits[e]) - maximum) / total;
      }
      std::vector<float> score(static_cast<size_t>(experts));
      for (int64_t e = 0; e < experts; ++e) {
        // Uses count first; the mass (at most the segment length) only orders equal counts.
        score[static_cast<size_t>(e)] = static_cast<float>(uses[static_cast<size_t>(e)] * double(view.time + 1) +
                                                           probability_mass[static_cast<size_t>(e)]);
      }
      const auto previous = held;
      held = greedy_top(score, k_hat_);
      std::sort(held.begin(), held.end());
      for (int64_t t = start; t < end; ++t) {
        const bool first = t == 0;
        record_mask(decisions, b * view.time + t, held, first || t > start ? held : previous, first, !first && t == start);
      }
      start = end;
    }
  }
  return decisions;
}

}  // namespace temoe
