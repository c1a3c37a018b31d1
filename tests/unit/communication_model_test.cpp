// The alpha-beta exchange model against hand-computed prices.
#include <gtest/gtest.h>

#include "parallel/communication_model.hpp"

namespace temoe {
namespace {

// 2 ranks per node, intra: 1 us + 1 GB/s, inter: 10 us + 0.1 GB/s (round numbers to compute by hand).
const ClusterProfile kProfile{"test", 2, {1e-6, 1e9}, {10e-6, 1e8}};

TEST(CommunicationModel, MatrixPricesTheBusiestRank) {
  // 4 ranks on 2 nodes. Rank 0 sends 1000 B to rank 1 (same node) and 1000 B to rank 2 (other
  // node), one message each; nothing else moves.
  TrafficMatrix traffic{4, std::vector<double>(16, 0), std::vector<double>(16, 0)};
  traffic.bytes[0 * 4 + 1] = 1000, traffic.messages[0 * 4 + 1] = 1;
  traffic.bytes[0 * 4 + 2] = 1000, traffic.messages[0 * 4 + 2] = 1;
  traffic.bytes[3 * 4 + 3] = 1e9;  // kept local: free
  // Rank 0 sends on both links in parallel: max(1e-6 + 1e-6, 1e-5 + 1e-5) = 2e-5.
  EXPECT_NEAR(modelled_exchange_seconds(traffic, kProfile), 2e-5, 1e-12);
  // A second inter-node message from rank 0 (to rank 3) adds to the same link: 4e-5.
  traffic.bytes[0 * 4 + 3] = 1000, traffic.messages[0 * 4 + 3] = 1;
  EXPECT_NEAR(modelled_exchange_seconds(traffic, kProfile), 4e-5, 1e-12);
  // Receiving is priced too: rank 2 receiving 3000 B from rank 0 costs 1e-5 + 3e-5.
  traffic.bytes[0 * 4 + 2] = 3000;
  EXPECT_NEAR(modelled_exchange_seconds(traffic, kProfile), 1e-5 + 3e-5 + 2e-5, 1e-12);
}

TEST(CommunicationModel, RankTrafficSpreadsPeersOverNodes) {
  // 5 ranks, 2 per node: of the 4 others, 1 shares the node. 4 peers, 4000 B: intra gets 1 peer
  // and 1000 B (2e-6), inter 3 peers and 3000 B (3e-5 + 3e-5).
  const RankTraffic no_counts{4000, 4, false};
  EXPECT_NEAR(modelled_exchange_seconds(no_counts, 5, kProfile), 6e-5, 1e-12);
  // The counts all-to-all adds max(1 * (1e-6 + 8e-9), 3 * (1e-5 + 8e-8)) = 3.024e-5.
  const RankTraffic with_counts{4000, 4, true};
  EXPECT_NEAR(modelled_exchange_seconds(with_counts, 5, kProfile), 6e-5 + 3.024e-5, 1e-12);
  EXPECT_EQ(modelled_exchange_seconds(RankTraffic{0, 0, true}, 1, kProfile), 0);
  EXPECT_THROW(modelled_exchange_seconds(RankTraffic{1, 5, true}, 5, kProfile), std::exception);
}

TEST(CommunicationModel, NamedProfilesAreUsable) {
  const auto profiles = named_cluster_profiles();
  ASSERT_FALSE(profiles.empty());
  for (const auto& profile : profiles) {
    EXPECT_EQ(profile.ranks_per_node, 8) << profile.name;
    EXPECT_GT(profile.intra_node.bytes_per_second, profile.inter_node.bytes_per_second) << profile.name;
  }
}

}  // namespace
}  // namespace temoe
