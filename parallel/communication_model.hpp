#pragma once
// An alpha-beta model of an expert exchange on a named cluster, so that traffic measured on a few
// ranks can be priced at cluster scale. A message between two ranks costs latency + bytes /
// bandwidth of the link between them (NVLink inside a node, the network between nodes). A rank
// sends its messages one after another on each link kind, intra-node and inter-node links work in
// parallel, and sending and receiving overlap; an exchange lasts as long as its busiest rank.
#include <cstdint>
#include <string>
#include <vector>

namespace temoe {

struct LinkCost {
  double latency_seconds = 0;
  double bytes_per_second = 1;
};

struct ClusterProfile {
  std::string name;
  int ranks_per_node = 8;
  LinkCost intra_node;
  LinkCost inter_node;
};

// The profiles bench dispatch prices traffic with; the first is the reference one.
std::vector<ClusterProfile> named_cluster_profiles();

// Bytes and messages from rank s to rank d at [s * ranks + d]; the diagonal (kept local) is free.
struct TrafficMatrix {
  int ranks = 0;
  std::vector<double> bytes;
  std::vector<double> messages;
};

double modelled_exchange_seconds(const TrafficMatrix& traffic, const ClusterProfile& profile);

// One rank's share of an exchange, for pricing at a world size that was not measured: it sends
// `remote_bytes` to `peers` other ranks (spread evenly, peers drawn uniformly from the other
// ranks, so (ranks_per_node - 1) / (ranks - 1) of them share its node), receives as much, and
// before that may exchange row counts with every other rank (a dense all-to-all of 8-byte counts).
struct RankTraffic {
  double remote_bytes = 0;
  double peers = 0;
  bool counts_exchange = true;
};

double modelled_exchange_seconds(const RankTraffic& traffic, int ranks, const ClusterProfile& profile);

}  // namespace temoe
