// The baselines' decisions on hand-made router logits: the segment oracle switches exactly where
// the domain does and holds the experts the router uses most over each segment; random switching
// follows each layer's own rate.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "src/core/error.hpp"
#include "src/learner/baseline_policies.hpp"

namespace temoe {
namespace {

// Router logits [B * T, E] in which expert `favourite(t)` and `favourite(t) + 1` lead at position t.
Tensor logits_favouring(const std::vector<int>& favourites, int64_t experts) {
  Tensor logits({static_cast<int64_t>(favourites.size()), experts});
  logits.fill(0.0f);
  for (size_t t = 0; t < favourites.size(); ++t) {
    logits.data()[t * experts + favourites[t]] = 3.0f;
    logits.data()[t * experts + (favourites[t] + 1) % experts] = 2.0f;
  }
  return logits;
}

LayerView view_of(const Tensor& logits, int64_t batch, int64_t time, std::span<const int64_t> ids, int64_t layer = 0) {
  LayerView view;
  view.layer = layer;
  view.batch = batch;
  view.time = time;
  view.router_logits = &logits;
  view.sequence_ids = ids;
  return view;
}

TEST(SegmentOracle, SwitchesWhereTheDomainChangesAndHoldsEachSegmentsMostUsedExperts) {
  // One sequence of 6 tokens, domains 0 0 0 1 1 1; the router (top-2) likes experts {0,1} twice
  // and {4,5} once in the first segment, {2,3} in the second; k_hat = 2.
  const Tensor logits = logits_favouring({0, 4, 0, 2, 2, 2}, 6);
  const std::vector<int16_t> domains = {0, 0, 0, 1, 1, 1};
  const std::vector<int64_t> ids = {0};
  SegmentOraclePolicy oracle(2, 2);
  oracle.set_domains(domains);
  const LayerDecisions decisions = oracle.decide(view_of(logits, 1, 6, ids));
  EXPECT_EQ(decisions.masks, (std::vector<int32_t>{0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3}));
  EXPECT_EQ(decisions.switched, (std::vector<uint8_t>{0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(decisions.terminated, (std::vector<uint8_t>{0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(decisions.previous_masks.begin() + 6, decisions.previous_masks.begin() + 8),
            (std::vector<int32_t>{0, 1}));
}

TEST(SegmentOracle, RefusesABatchWithoutDomainLabels) {
  const Tensor logits = logits_favouring({0, 1, 2}, 4);
  const std::vector<int64_t> ids = {0};
  SegmentOraclePolicy oracle(2, 2);
  EXPECT_THROW(oracle.decide(view_of(logits, 1, 3, ids)), Error);
}

TEST(RandomSwitching, EachLayerSwitchesAtItsOwnRate) {
  const int64_t batch = 8, time = 200;
  std::vector<int> favourites(static_cast<size_t>(batch * time));
  for (size_t i = 0; i < favourites.size(); ++i) favourites[i] = static_cast<int>(i % 7);  // every reload changes the mask
  const Tensor logits = logits_favouring(favourites, 8);
  std::vector<int64_t> ids(batch);
  std::iota(ids.begin(), ids.end(), 0);
  RandomSwitchPolicy random(2, {0.05, 0.4}, 3);
  for (int64_t layer = 0; layer < 2; ++layer) {
    const LayerDecisions decisions = random.decide(view_of(logits, batch, time, ids, layer));
    const double switches = std::accumulate(decisions.switched.begin(), decisions.switched.end(), 0.0);
    const double rate = switches / double(batch * (time - 1));
    const double expected = layer == 0 ? 0.05 : 0.4;
    // Binomial over 1592 transitions: 5 standard deviations.
    EXPECT_NEAR(rate, expected, 5 * std::sqrt(expected * (1 - expected) / double(batch * (time - 1)))) << "layer " << layer;
  }
}

}  // namespace
}  // namespace temoe
