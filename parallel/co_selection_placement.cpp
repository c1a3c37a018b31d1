#include "parallel/co_selection_placement.hpp"

#include <algorithm>
#include <numeric>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"

namespace temoe {

namespace {

void check_samples(const SelectionSamples& samples) {
  TEMOE_CHECK(samples.num_experts > 0 && samples.set_size > 0 &&
                  static_cast<int64_t>(samples.sets.size()) % samples.set_size == 0,
              "selection samples: " << samples.sets.size() << " ids do not form sets of " << samples.set_size);
  for (const int32_t expert : samples.sets) {
    TEMOE_CHECK(expert >= 0 && expert < samples.num_experts,
                "selection samples: expert id " << expert << " outside [0, " << samples.num_experts << ")");
  }
}

std::vector<double> expert_loads(const SelectionSamples& samples) {
  std::vector<double> load(static_cast<size_t>(samples.num_experts), 0.0);
  for (const int32_t expert : samples.sets) load[static_cast<size_t>(expert)] += 1.0;
  return load;
}

double max_rank_load(const std::vector<int>& owners, const std::vector<double>& load, int ep_size) {
  std::vector<double> per_rank(static_cast<size_t>(ep_size), 0.0);
  for (size_t expert = 0; expert < owners.size(); ++expert) per_rank[static_cast<size_t>(owners[expert])] += load[expert];
  return *std::max_element(per_rank.begin(), per_rank.end());
}

int span_of(std::span<const int32_t> set, const std::vector<int>& owners) {
  // Sets are small (k or k_hat ids): a quadratic distinct count beats any allocation.
  int distinct = 0;
  for (size_t i = 0; i < set.size(); ++i) {
    bool seen = false;
    for (size_t j = 0; j < i && !seen; ++j) seen = owners[static_cast<size_t>(set[j])] == owners[static_cast<size_t>(set[i])];
    distinct += !seen;
  }
  return distinct;
}

// The search state: owners, per-rank loads and the total span, with swaps evaluated on only the
// sets that hold one of the two experts.
class SwapSearch {
 public:
  SwapSearch(const SelectionSamples& samples, std::vector<int> owners, int ep_size, double load_bound)
      : samples_(samples), owners_(std::move(owners)), load_bound_(load_bound),
        load_(expert_loads(samples)), sets_of_(static_cast<size_t>(samples.num_experts)),
        rank_load_(static_cast<size_t>(ep_size), 0.0) {
    for (int64_t i = 0; i < samples.count(); ++i) {
      const auto set = samples.set(i);
      for (size_t j = 0; j < set.size(); ++j) {
        const auto before_j = set.begin() + static_cast<std::ptrdiff_t>(j);
        if (std::find(set.begin(), before_j, set[j]) == before_j) sets_of_[static_cast<size_t>(set[j])].push_back(i);
      }
      total_span_ += span_of(set, owners_);
    }
    for (size_t expert = 0; expert < owners_.size(); ++expert) rank_load_[static_cast<size_t>(owners_[expert])] += load_[expert];
  }

  // Steepest descent over all swaps until no swap lowers the span within the load bound.
  void descend() {
    const auto experts = static_cast<int32_t>(owners_.size());
    while (true) {
      int64_t best_gain = 0;
      int32_t best_a = -1, best_b = -1;
      for (int32_t a = 0; a < experts; ++a) {
        for (int32_t b = a + 1; b < experts; ++b) {
          if (owners_[static_cast<size_t>(a)] == owners_[static_cast<size_t>(b)] || !load_allows(a, b)) continue;
          const int64_t gain = swap_gain(a, b);
          if (gain > best_gain) best_gain = gain, best_a = a, best_b = b;
        }
      }
      if (best_a < 0) return;
      apply_swap(best_a, best_b);
      total_span_ -= best_gain;
    }
  }

  int64_t total_span() const { return total_span_; }
  const std::vector<int>& owners() const { return owners_; }

 private:
  bool load_allows(int32_t a, int32_t b) const {
    const auto ra = static_cast<size_t>(owners_[static_cast<size_t>(a)]), rb = static_cast<size_t>(owners_[static_cast<size_t>(b)]);
    const double delta = load_[static_cast<size_t>(b)] - load_[static_cast<size_t>(a)];
    const double new_a = rank_load_[ra] + delta, new_b = rank_load_[rb] - delta;
    const double before = std::max(rank_load_[ra], rank_load_[rb]), after = std::max(new_a, new_b);
    return after <= load_bound_ || after <= before;
  }

  int64_t swap_gain(int32_t a, int32_t b) {
    int64_t before = 0, after = 0;
    auto& owners = owners_;
    // The sets holding a or b (those holding both, once).
    std::vector<int64_t>& touched = scratch_;
    touched.clear();
    for (const int64_t i : sets_of_[static_cast<size_t>(a)]) touched.push_back(i);
    for (const int64_t i : sets_of_[static_cast<size_t>(b)]) touched.push_back(i);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (const int64_t i : touched) before += span_of(samples_.set(i), owners);
    std::swap(owners[static_cast<size_t>(a)], owners[static_cast<size_t>(b)]);
    for (const int64_t i : touched) after += span_of(samples_.set(i), owners);
    std::swap(owners[static_cast<size_t>(a)], owners[static_cast<size_t>(b)]);
    return before - after;
  }

  void apply_swap(int32_t a, int32_t b) {
    const auto ra = static_cast<size_t>(owners_[static_cast<size_t>(a)]), rb = static_cast<size_t>(owners_[static_cast<size_t>(b)]);
    const double delta = load_[static_cast<size_t>(b)] - load_[static_cast<size_t>(a)];
    rank_load_[ra] += delta;
    rank_load_[rb] -= delta;
    std::swap(owners_[static_cast<size_t>(a)], owners_[static_cast<size_t>(b)]);
  }

  const SelectionSamples& samples_;
  std::vector<int> owners_;
  double load_bound_;
  std::vector<double> load_;
  std::vector<std::vector<int64_t>> sets_of_;
  std::vector<double> rank_load_;
  std::vector<int64_t> scratch_;
  int64_t total_span_ = 0;
};

}  // namespace

PlacementQuality evaluate_placement(const ExpertPlacement& placement, const SelectionSamples& samples) {
  check_samples(samples);
  TEMOE_CHECK(placement.num_experts() == samples.num_experts,
              "placement of " << placement.num_experts() << " experts evaluated on samples of " << samples.num_experts);
  PlacementQuality quality;
  for (int64_t i = 0; i < samples.count(); ++i) quality.mean_ranks_spanned += span_of(samples.set(i), placement.owners());
  quality.mean_ranks_spanned /= static_cast<double>(std::max<int64_t>(samples.count(), 1));
  const auto load = expert_loads(samples);
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  const double mean = total / placement.ep_size();
  quality.max_load_over_mean = mean > 0 ? max_rank_load(placement.owners(), load, placement.ep_size()) / mean : 1.0;
  return quality;
}

ExpertPlacement co_selection_placement(const SelectionSamples& samples, int ep_size, const PlacementSearchOptions& options) {
  check_samples(samples);
  TEMOE_CHECK(options.restarts >= 1 && options.load_tolerance >= 0,
              "placement search: restarts " << options.restarts << " and load tolerance " << options.load_tolerance
                                            << " must be >= 1 and >= 0");
  const auto contiguous = ExpertPlacement::contiguous(samples.num_experts, ep_size);
  const auto load = expert_loads(samples);
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / ep_size;
  const double bound = mean * (1.0 + options.load_tolerance);

  std::vector<int> best;
  int64_t best_span = 0;
  for (int restart = 0; restart < options.restarts; ++restart) {
    std::vector<int> owners = contiguous.owners();
    if (restart > 0) {  // a seeded shuffle of the contiguous owners: still E / X experts per rank
      for (size_t i = owners.size() - 1; i > 0; --i) {
        const uint64_t draw = CounterRandom(options.seed, {static_cast<uint64_t>(restart), i}).next_u64();
        std::swap(owners[i], owners[static_cast<size_t>(draw % (i + 1))]);
      }
    }
    SwapSearch search(samples, std::move(owners), ep_size, bound);
    search.descend();
    const bool fits = max_rank_load(search.owners(), load, ep_size) <= bound;
    const bool best_fits = !best.empty() && max_rank_load(best, load, ep_size) <= bound;
    if (best.empty() || (fits && !best_fits) || (fits == best_fits && search.total_span() < best_span)) {
      best = search.owners();
      best_span = search.total_span();
    }
  }
  return ExpertPlacement::from_owners(std::move(best), ep_size);
}

}  // namespace temoe
