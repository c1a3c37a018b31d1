#include "parallel/communication_model.hpp"

#include <algorithm>

#include "src/core/error.hpp"

namespace temoe {

std::vector<ClusterProfile> named_cluster_profiles() {
  // H100 nodes: 8 GPUs on NVLink 4 (about 450 GB/s per GPU each way, a few microseconds per
  // message through NCCL) and one 400 Gb/s NIC per GPU (50 GB/s, ~10 us end to end).
  // A100 nodes: NVLink 3 (300 GB/s) and 200 Gb/s per GPU.
  return {{"h100-nvlink-400g", 8, {3e-6, 450e9}, {10e-6, 50e9}},
          {"a100-nvlink-200g", 8, {4e-6, 300e9}, {12e-6, 25e9}}};
}

namespace {

void check_profile(const ClusterProfile& profile) {
  TEMOE_CHECK(profile.ranks_per_node >= 1 && profile.intra_node.bytes_per_second > 0 &&
                  profile.inter_node.bytes_per_second > 0,
              "cluster profile '" << profile.name << "': ranks per node and bandwidths must be positive");
}

double link_seconds(double messages, double bytes, const LinkCost& link) {
  return messages * link.latency_seconds + bytes / link.bytes_per_second;
}

}  // namespace

double modelled_exchange_seconds(const TrafficMatrix& traffic, const ClusterProfile& profile) {
  check_profile(profile);
  const auto ranks = static_cast<size_t>(traffic.ranks);
  TEMOE_CHECK(traffic.bytes.size() == ranks * ranks && traffic.messages.size() == ranks * ranks,
              "traffic matrix of " << traffic.bytes.size() << " bytes and " << traffic.messages.size()
                                   << " message entries for " << ranks << " ranks (expected " << ranks * ranks << ")");
  const auto node = [&](size_t rank) { return rank / static_cast<size_t>(profile.ranks_per_node); };
  double slowest = 0;
  for (size_t rank = 0; rank < ranks; ++rank) {
    // [0]: sending, [1]: receiving; per direction, intra- and inter-node links run in parallel.
    double intra[2] = {0, 0}, inter[2] = {0, 0};
    for (size_t peer = 0; peer < ranks; ++peer) {
      if (peer == rank) continue;
      const size_t out = rank * ranks + peer, in = peer * ranks + rank;
      const bool same_node = node(rank) == node(peer);
      const LinkCost& link = same_node ? profile.intra_node : profile.inter_node;
      double* totals = same_node ? intra : inter;
      totals[0] += link_seconds(traffic.messages[out], traffic.bytes[out], link);
      totals[1] += link_seconds(traffic.messages[in], traffic.bytes[in], link);
    }
    slowest = std::max({slowest, std::max(intra[0], inter[0]), std::max(intra[1], inter[1])});
  }
  return slowest;
}

double modelled_exchange_seconds(const RankTraffic& traffic, int ranks, const ClusterProfile& profile) {
  check_profile(profile);
  TEMOE_CHECK(ranks >= 1 && traffic.peers >= 0 && traffic.peers <= ranks - 1 && traffic.remote_bytes >= 0,
              "rank traffic: " << traffic.peers << " peers and " << traffic.remote_bytes << " bytes at " << ranks
                               << " ranks (peers must be in [0, ranks - 1])");
  if (ranks == 1) return 0;
  const double others = ranks - 1.0;
  const double node_peers = std::min(profile.ranks_per_node, ranks) - 1.0;
  const double intra_share = node_peers / others;
  const double intra_seconds = link_seconds(traffic.peers * intra_share, traffic.remote_bytes * intra_share, profile.intra_node);
  const double inter_seconds =
      link_seconds(traffic.peers * (1 - intra_share), traffic.remote_bytes * (1 - intra_share), profile.inter_node);
  double seconds = std::max(intra_seconds, inter_seconds);
  if (traffic.counts_exchange) {
    seconds += std::max(link_seconds(node_peers, 8 * node_peers, profile.intra_node),
                        link_seconds(others - node_peers, 8 * (others - node_peers), profile.inter_node));
  }
  return seconds;
}

}  // namespace temoe
