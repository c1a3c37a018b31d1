// Expert placements: contiguous and explicit owners (E / X experts per rank, checked), and the
// co-selection search, which must find hidden groups of experts that are always selected together
// while keeping the load per rank within its bound.
#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/co_selection_placement.hpp"
#include "src/core/counter_random.hpp"

namespace temoe {
namespace {

TEST(ExpertPlacement, ContiguousAndExplicitOwners) {
  const auto contiguous = ExpertPlacement::contiguous(8, 4);
  EXPECT_TRUE(contiguous.is_contiguous());
  EXPECT_EQ(contiguous.experts_of(1), (std::vector<int64_t>{2, 3}));
  const auto permuted = ExpertPlacement::from_owners({3, 0, 0, 1, 2, 1, 3, 2}, 4);
  EXPECT_FALSE(permuted.is_contiguous());
  EXPECT_EQ(permuted.experts_of(0), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(permuted.local_index(2), 1);
  EXPECT_EQ(permuted.local_index(7), 1);
  const std::vector<int32_t> set = {0, 6, 3};
  EXPECT_EQ(permuted.ranks_spanned(set), 2);  // experts 0 and 6 both on rank 3
  EXPECT_EQ(contiguous.ranks_spanned(set), 3);
}

TEST(ExpertPlacement, RefusesUnevenOrOutOfRangeOwners) {
  try {
    ExpertPlacement::from_owners({0, 0, 0, 1}, 2);
    FAIL() << "an uneven placement was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("rank 0 3 experts"), std::string::npos) << error.what();
  }
  EXPECT_THROW(ExpertPlacement::from_owners({0, 2}, 2), std::exception);
  EXPECT_THROW(ExpertPlacement::from_owners({0, 0, 1}, 2), std::exception);
}

// 16 experts in 4 hidden groups of 4 ({g, g + 4, g + 8, g + 12}); each sample is 2 experts of one
// group (like a token's top-2 inside a topic's experts), with a little noise across groups.
SelectionSamples grouped_samples(int64_t count, double noise) {
  SelectionSamples samples{16, 2, {}};
  for (int64_t i = 0; i < count; ++i) {
    CounterRandom random(7, {static_cast<uint64_t>(i)});
    const auto group = static_cast<int32_t>(random.next_u64() % 4);
    const auto first = static_cast<int32_t>(group + 4 * static_cast<int32_t>(random.next_u64() % 4));
    auto second = static_cast<int32_t>(group + 4 * static_cast<int32_t>(random.next_u64() % 4));
    if (second == first) second = (second + 4) % 16;
    if (random.uniform() < noise) second = static_cast<int32_t>(random.next_u64() % 16);
    if (second == first) second = (first + 1) % 16;
    samples.sets.push_back(first);
    samples.sets.push_back(second);
  }
  return samples;
}

TEST(CoSelectionPlacement, FindsHiddenGroupsAndKeepsLoadBalanced) {
  const auto samples = grouped_samples(4000, 0.05);
  const auto contiguous = evaluate_placement(ExpertPlacement::contiguous(16, 4), samples);
  const auto placement = co_selection_placement(samples, 4);
  const auto found = evaluate_placement(placement, samples);
  // Contiguous blocks split every group over all 4 ranks: two experts share a rank only by chance.
  EXPECT_GT(contiguous.mean_ranks_spanned, 1.6);
  EXPECT_LT(found.mean_ranks_spanned, 1.1) << "contiguous " << contiguous.mean_ranks_spanned;
  EXPECT_LE(found.max_load_over_mean, 1.10 + 1e-9);
  for (int rank = 0; rank < 4; ++rank) {
    const auto experts = placement.experts_of(rank);
    ASSERT_EQ(experts.size(), 4u);
    for (const int64_t expert : experts) EXPECT_EQ(expert % 4, experts[0] % 4) << "rank " << rank;
  }
  // Deterministic: the same samples and options give the same placement.
  EXPECT_EQ(co_selection_placement(samples, 4).owners(), placement.owners());
}

TEST(CoSelectionPlacement, LoadBoundWinsOverCoSelection) {
  // Experts 0..3 always together and much busier than the rest: putting them on one rank would
  // give it far more than its share, so the bound must split them.
  SelectionSamples samples{8, 2, {}};
  for (int i = 0; i < 600; ++i) {
    samples.sets.push_back(i % 4);
    samples.sets.push_back((i + 1) % 4);
  }
  for (int i = 0; i < 100; ++i) {
    samples.sets.push_back(4 + i % 4);
    samples.sets.push_back(4 + (i + 2) % 4);
  }
  const auto placement = co_selection_placement(samples, 2, {.load_tolerance = 0.2, .restarts = 3, .seed = 5});
  const auto quality = evaluate_placement(placement, samples);
  EXPECT_LE(quality.max_load_over_mean, 1.2 + 1e-9);
  int busy_on_rank0 = 0;
  for (int expert = 0; expert < 4; ++expert) busy_on_rank0 += placement.owner(expert) == 0;
  EXPECT_EQ(busy_on_rank0, 2);
}

TEST(CoSelectionPlacement, RefusesBadSamples) {
  SelectionSamples samples{4, 2, {0, 1, 2}};
  EXPECT_THROW(co_selection_placement(samples, 2), std::exception);
  samples.sets = {0, 9};
  EXPECT_THROW(co_selection_placement(samples, 2), std::exception);
}

}  // namespace
}  // namespace temoe
