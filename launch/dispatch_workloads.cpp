#include "launch/dispatch_workloads.hpp"

#include <algorithm>
#include <cmath>

#include "src/model/key_value_cache.hpp"

namespace temoe::launch {

void decode_positions(MoeTransformer& model, std::span<const int32_t> tokens, int64_t batch, int64_t time,
                      int64_t prompt, const std::vector<LayerDecisions>* decisions,
                      const std::function<void()>& before_decode) {
  const ModelConfig& config = model.config();
  const int64_t experts = config.num_experts;
  KeyValueCache cache(config, batch, time, model.backend_.device());
  std::vector<int32_t> chunk;
  std::vector<uint8_t> flags;
  const auto run_chunk = [&](int64_t first, int64_t length) {
    chunk.resize(static_cast<size_t>(batch * length));
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(tokens.begin() + b * time + first, length, chunk.begin() + b * length);
    }
    ForwardState state = model.begin(cache, chunk, length);
    for (int64_t layer = 0; layer < config.num_layers; ++layer) {
      model.attention(layer, state);
      const MoeInput input = model.moe_input(layer, state);
      if (!decisions) {
        model.moe(layer, state, input, nullptr);
        continue;
      }
      const LayerDecisions& held = (*decisions)[static_cast<size_t>(layer)];
      flags.assign(static_cast<size_t>(batch * length * experts), 0);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t t = 0; t < length; ++t) {
          const int32_t* mask = held.masks.data() + (b * time + first + t) * held.k_hat;
          for (int64_t j = 0; j < held.k_hat; ++j) flags[static_cast<size_t>((b * length + t) * experts + mask[j])] = 1;
        }
      }
      model.moe(layer, state, input, &flags);
    }
  };
  run_chunk(0, prompt);
  before_decode();
  for (int64_t position = prompt; position < time; ++position) run_chunk(position, 1);
}

ModeFigures summarize_dispatch(const DispatchStatistics& statistics, Communicator& world) {
  const double calls = static_cast<double>(std::max<int64_t>(statistics.layer_calls, 1));
  // Sums over ranks: remote bytes, tokens, messages, peers, counts negotiations, plan checks.
  double sums[6] = {static_cast<double>(statistics.remote_bytes_sent), static_cast<double>(statistics.tokens),
                    static_cast<double>(statistics.messages),          static_cast<double>(statistics.peers),
                    static_cast<double>(statistics.counts_negotiations), static_cast<double>(statistics.plan_checks)};
  world.all_reduce_sum(std::span<double>(sums, 6));
  // The slowest rank's times (every rank waits for it), as integer microseconds for the max-reduction.
  int64_t slowest[2] = {static_cast<int64_t>(std::llround(statistics.exchange_seconds / calls * 1e9)),
                        static_cast<int64_t>(std::llround(statistics.expert_seconds / calls * 1e9))};
  world.all_reduce_max(std::span<int64_t>(slowest, 2));
  const double ranks = world.size(), all_calls = calls * ranks;
  ModeFigures figures;
  figures.layer_calls = calls;
  figures.remote_bytes_per_token = sums[1] > 0 ? sums[0] / sums[1] : 0;
  figures.messages_per_step = sums[2] / calls;
  figures.peers_per_step = sums[3] / all_calls;
  figures.seconds_per_layer = static_cast<double>(slowest[0]) * 1e-9;
  figures.expert_seconds_per_layer = static_cast<double>(slowest[1]) * 1e-9;
  figures.counts_exchange_skipped_fraction = 1.0 - sums[4] / all_calls;
  figures.plan_checks_per_step = sums[5] / all_calls;
  figures.rank_traffic.remote_bytes = sums[0] / all_calls;
  figures.rank_traffic.peers = figures.peers_per_step;
  figures.rank_traffic.counts_exchange = true;
  return figures;
}

nlohmann::json ModeFigures::to_json() const {
  return {{"remote_bytes_per_token", remote_bytes_per_token},
          {"messages_per_step", messages_per_step},
          {"peers_per_step", peers_per_step},
          {"seconds_per_layer", seconds_per_layer},
          {"expert_seconds_per_layer", expert_seconds_per_layer},
          {"counts_exchange_skipped_fraction", counts_exchange_skipped_fraction},
          {"plan_checks_per_step", plan_checks_per_step},
          {"layer_calls", layer_calls}};
}

double modelled_layer_seconds(const ModeFigures& figures, int ranks, const ClusterProfile& profile) {
  RankTraffic traffic = figures.rank_traffic;
  traffic.peers = std::min(traffic.peers, ranks - 1.0);
  traffic.counts_exchange = true;
  const double with_counts = modelled_exchange_seconds(traffic, ranks, profile);
  traffic.counts_exchange = false;
  const double without_counts = modelled_exchange_seconds(traffic, ranks, profile);
  const double skipped = figures.counts_exchange_skipped_fraction;
  // A one-word all-reduce: a recursive doubling, ceil(log2 P) latencies, off-node once P exceeds a node.
  const double flag_latency = ranks > profile.ranks_per_node ? profile.inter_node.latency_seconds
                                                             : profile.intra_node.latency_seconds;
  const double plan_check = ranks > 1 ? std::ceil(std::log2(static_cast<double>(ranks))) * flag_latency : 0.0;
  return skipped * without_counts + (1 - skipped) * with_counts + figures.plan_checks_per_step * plan_check;
}

SwitchCount count_switches(const std::vector<LayerDecisions>& decisions, int64_t batch, int64_t time,
                           int64_t from_position) {
  SwitchCount count;
  for (const LayerDecisions& layer : decisions) {
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = std::max<int64_t>(from_position, 1); t < time; ++t) {
        count.switches += layer.switched[static_cast<size_t>(b * time + t)];
        count.positions += 1;
      }
    }
  }
  return count;
}

}  // namespace temoe::launch
