// temoe bench dispatch: token-mode expert dispatch under mpirun. Runs forwards of the model on
// random tokens with the experts spread over the ranks, reports traffic (remote bytes per token,
// messages and peers per layer call) and time in the exchange per MoE layer, and replays the very
// same byte matrices through plain MPI_Alltoallv calls: the collective's floor, so the dispatcher's
// overhead is a ratio measured in the same run.
//
// Two dispatcher times are reported. "In the forward" is what the model's layers paid. "Replayed"
// runs the same calls (the same routing, so the same byte matrices) through the dispatcher again,
// with a copy in place of the expert FFNs, interleaved call by call with the floor's all-to-alls,
// so that both are measured under the same conditions. They differ from the forward's: with 4
// ranks on 2 cores, the first large all-to-all after a computation (even after a sleep) was
// measured 1-2 ms slower than the same call amid other collectives, and copies slow down while
// the ranks beside them compute; the forward charges that to the exchange, the floor never sees
// it. The replayed ratio is the dispatcher's own overhead over the plain collective.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "launch/benchmarks.hpp"
#include "launch/command_line.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/random_tokens.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

namespace {

// Seconds of one plain all-to-all-v that sends `send_bytes[r]` bytes to rank r (the counts are
// exchanged beforehand, outside the timing).
double plain_all_to_all_seconds(Communicator& communicator, std::span<const int64_t> send_bytes) {
  const auto ranks = static_cast<size_t>(communicator.size());
  std::vector<int64_t> receive_bytes(ranks);
  communicator.all_to_all(std::as_bytes(send_bytes), std::as_writable_bytes(std::span<int64_t>(receive_bytes)),
                          sizeof(int64_t));
  std::vector<size_t> send_counts(ranks), send_offsets(ranks), receive_counts(ranks), receive_offsets(ranks);
  size_t send_total = 0, receive_total = 0;
  for (size_t r = 0; r < ranks; ++r) {
    send_counts[r] = static_cast<size_t>(send_bytes[r]);
    send_offsets[r] = send_total;
    send_total += send_counts[r];
    receive_counts[r] = static_cast<size_t>(receive_bytes[r]);
    receive_offsets[r] = receive_total;
    receive_total += receive_counts[r];
  }
  std::vector<std::byte> send(send_total, std::byte{1}), receive(receive_total);
  communicator.barrier();
  const auto start = std::chrono::steady_clock::now();
  communicator.all_to_all_v(send, send_counts, send_offsets, receive, receive_counts, receive_offsets);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs recorded calls' routing through the dispatcher again, with an expert that copies its input
// rows to its output rows (the dispatcher's statistics then hold the replays alone).
class DispatchReplay {
 public:
  DispatchReplay(TokenDispatcher& dispatcher, const DispatchStatistics& recorded, int64_t width, int64_t top_k)
      : dispatcher_(dispatcher), recorded_(recorded), top_k_(top_k) {
    size_t most_tokens = 1;
    for (const auto& experts : recorded.call_experts) {
      most_tokens = std::max(most_tokens, experts.size() / static_cast<size_t>(top_k));
    }
    hidden_ = Tensor({static_cast<int64_t>(most_tokens), width});
    slots_ = Tensor({static_cast<int64_t>(most_tokens) * top_k, width});
    hidden_.fill(1.0f);
    slots_.fill(0.0f);
    copy_ = [width](int64_t, const Tensor& input, std::span<const int32_t> rows, std::span<const int32_t> output_rows,
                    Tensor& output) {
      for (size_t i = 0; i < rows.size(); ++i) {
        std::memcpy(output.data() + output_rows[i] * width, input.data() + rows[i] * width, static_cast<size_t>(width) * 4);
      }
    };
    dispatcher_.reset_statistics();
  }

  void run(size_t call) {
    const auto& experts = recorded_.call_experts.at(call);
    const auto tokens = static_cast<int64_t>(experts.size()) / top_k_;
    Tensor slots = slots_.rows(0, tokens * top_k_);
    dispatcher_.dispatch(hidden_.rows(0, tokens), experts, top_k_, slots, copy_);
  }

 private:
  TokenDispatcher& dispatcher_;
  const DispatchStatistics& recorded_;
  int64_t top_k_;
  Tensor hidden_, slots_;
  LocalExpertFunction copy_;
};

// What each rank reports to rank 0, per layer call: the seconds of the dispatcher in the forward
// and replayed (each total followed by its phases), of the experts and of the floor's two
// all-to-alls, and the page faults in the dispatcher's exchange.
constexpr size_t kPhases = 6;
enum Time : size_t {
  kExchange,
  kPhasesStart,
  kReplay = kPhasesStart + kPhases,
  kReplayPhasesStart,
  kExperts = kReplayPhasesStart + kPhases,
  kFloorDispatch,
  kFloorReturn,
  kPageFaults,        // page faults per layer call in the forward's exchange
  kReplayPageFaults,  // and in the replays'
  kTimes
};
using RankTimes = std::array<double, kTimes>;
constexpr const char* kPhaseNames[kPhases] = {"plan", "pack", "dispatch_exchange", "unpack", "return_exchange", "combine"};

void put_phases(const DispatchStatistics& statistics, RankTimes& times, size_t first) {
  const auto calls = static_cast<double>(std::max<int64_t>(statistics.layer_calls, 1));
  const DispatchPhaseSeconds& phases = statistics.phases;
  const double values[kPhases] = {phases.plan,   phases.pack,            phases.dispatch_exchange,
                                  phases.unpack, phases.return_exchange, phases.combine};
  times[first - 1] = statistics.exchange_seconds / calls;
  for (size_t i = 0; i < kPhases; ++i) times[first + i] = values[i] / calls;
}

nlohmann::json phases_json(const RankTimes& mean, size_t first) {
  nlohmann::json breakdown;
  for (size_t i = 0; i < kPhases; ++i) breakdown[kPhaseNames[i]] = mean[first + i];
  breakdown["total"] = mean[first - 1];
  return breakdown;
}

void print_phases(const char* label, const RankTimes& mean, size_t first) {
  std::printf("  %-12s", label);
  for (size_t i = 0; i < kPhases; ++i) std::printf(" %s %.3f", kPhaseNames[i], mean[first + i] * 1e3);
  std::printf("  (sum %.3f)\n", mean[first - 1] * 1e3);
}

}  // namespace

int bench_dispatch(const Arguments& arguments) {
  po::options_description options("temoe bench dispatch");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("batch", po::value<int64_t>()->default_value(0), "sequences in all (0: one per rank)")
      ("time", po::value<int64_t>()->default_value(256), "tokens per sequence")
      ("warmups", po::value<int>()->default_value(2),
       "untimed forwards first (until the allocator reuses memory instead of mapping fresh pages)")
      ("repeats", po::value<int>()->default_value(3), "timed forwards")
      ("replays", po::value<int>()->default_value(3),
       "passes over the forwards' layer calls, each replayed through the dispatcher and through the plain "
       "all-to-all (interleaved, call by call)")
      ("seed", po::value<uint64_t>()->default_value(7), "seed of the random tokens")
      ("json", po::value<std::string>(), "also write the figures to this JSON file (rank 0)");
  const auto parsed = parse_command_line("bench dispatch", arguments, options);
  if (parsed.help) {
    std::cout << command_help("mpirun -np N temoe bench dispatch --model DIR [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  std::string model_dir = values.count("model") ? values["model"].as<std::string>()
                          : values.count("model.dir") ? values["model.dir"].as<std::string>() : "";
  if (model_dir.empty()) TEMOE_FAIL("temoe bench dispatch: --model DIR is required");
  apply_thread_settings(values);
  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  auto model = load_distributed_model(model_dir, Device::cpu, world, values["parallel.ep_size"].as<int>());
  if (!model->dispatcher) TEMOE_FAIL("temoe bench dispatch: needs an expert-parallel size above 1 (run under mpirun -np N)");
  const int64_t batch = values["batch"].as<int64_t>() > 0 ? values["batch"].as<int64_t>() : world.size();
  const int64_t time = values["time"].as<int64_t>();
  const int repeats = values["repeats"].as<int>();
  const TokenArray tokens = random_tokens(batch, time, model->config.vocab_size, values["seed"].as<uint64_t>());
  const int64_t first = batch * world.rank() / world.size(), last = batch * (world.rank() + 1) / world.size();
  const std::span<const int32_t> mine(tokens.ids.data() + first * time, static_cast<size_t>((last - first) * time));

  const int warmups = values["warmups"].as<int>();
  for (int r = 0; r < warmups; ++r) model->transformer->forward(mine, last - first, time);
  model->dispatcher->reset_statistics(/*record_calls=*/true);
  model->dispatcher->set_barrier_before_exchange(true);
  world.barrier();
  for (int r = 0; r < repeats; ++r) model->transformer->forward(mine, last - first, time);
  const DispatchStatistics statistics = model->dispatcher->statistics();
  // The floor and the replays, interleaved call by call so that both see the same conditions.
  Communicator& group = model->grid->expert_parallel();
  DispatchReplay replay_calls(*model->dispatcher, statistics, model->config.hidden_size, model->config.top_k);
  const int replays = std::max(values["replays"].as<int>(), 1);
  double floor_dispatch = 0, floor_return = 0;
  for (int pass = 0; pass < replays; ++pass) {
    for (size_t call = 0; call < statistics.call_experts.size(); ++call) {
      replay_calls.run(call);
      floor_dispatch += plain_all_to_all_seconds(group, statistics.call_dispatch_bytes[call]);
      floor_return += plain_all_to_all_seconds(group, statistics.call_return_bytes[call]);
    }
  }
  const DispatchStatistics replayed = model->dispatcher->statistics();

  // Sums over all ranks; headline times are the slowest rank's (everyone waits for it), the
  // breakdowns the mean over ranks, phase by phase, so that they add up.
  const auto calls = static_cast<double>(statistics.layer_calls);
  double sums[4] = {static_cast<double>(statistics.remote_bytes_sent), static_cast<double>(statistics.tokens),
                    static_cast<double>(statistics.messages), static_cast<double>(statistics.peers)};
  world.all_reduce_sum(std::span<double>(sums, 4));
  RankTimes times{};
  put_phases(statistics, times, kPhasesStart);
  put_phases(replayed, times, kReplayPhasesStart);
  times[kExperts] = statistics.expert_seconds / calls;
  times[kPageFaults] = static_cast<double>(statistics.page_faults) / calls;
  times[kReplayPageFaults] =
      static_cast<double>(replayed.page_faults) / static_cast<double>(std::max<int64_t>(replayed.layer_calls, 1));
  times[kFloorDispatch] = floor_dispatch / static_cast<double>(std::max<int64_t>(replayed.layer_calls, 1));
  times[kFloorReturn] = floor_return / static_cast<double>(std::max<int64_t>(replayed.layer_calls, 1));
  std::vector<RankTimes> all_times(static_cast<size_t>(world.size()));
  {
    const auto gathered = world.gather_v(std::as_bytes(std::span<const double>(times)), 0);
    if (world.rank() == 0) std::memcpy(all_times.data(), gathered.data(), gathered.size());
  }
  if (world.rank() == 0) {
    double exchange = 0, replay = 0, floor = 0, experts = 0;
    RankTimes mean{};
    for (const RankTimes& rank_times : all_times) {
      exchange = std::max(exchange, rank_times[kExchange]);
      replay = std::max(replay, rank_times[kReplay]);
      floor = std::max(floor, rank_times[kFloorDispatch] + rank_times[kFloorReturn]);
      experts = std::max(experts, rank_times[kExperts]);
      for (size_t i = 0; i < kTimes; ++i) mean[i] += rank_times[i] / world.size();
    }
    const double bytes_per_token = sums[0] / sums[1];
    const double messages_per_step = sums[2] / calls;
    const double peers_per_step = sums[3] / calls / world.size();
    std::printf("bench dispatch: %s, %d ranks (ep %d), %lld x %lld tokens, %d forwards x %lld layers, %d replays\n",
                to_string(model->config.architecture).c_str(), world.size(), model->grid->shape().ep_size,
                static_cast<long long>(batch), static_cast<long long>(time), repeats,
                static_cast<long long>(model->config.num_layers), replays);
    std::printf("  token mode   remote bytes/token %10.1f   messages/layer %6.2f   peers/rank/layer %5.2f\n",
                bytes_per_token, messages_per_step, peers_per_step);
    std::printf("               exchange in the forward %8.3f ms/layer   (experts %8.3f ms/layer)\n", exchange * 1e3,
                experts * 1e3);
    std::printf("               exchange replayed       %8.3f ms/layer\n", replay * 1e3);
    std::printf("  floor        plain MPI_Alltoallv of the same bytes %8.3f ms/layer\n", floor * 1e3);
    std::printf("  dispatcher/floor  replayed %.2fx   in the forward %.2fx\n", replay / floor, exchange / floor);
    std::printf("  breakdown, ms/layer, mean over ranks:\n");
    print_phases("forward", mean, kPhasesStart);
    print_phases("replayed", mean, kReplayPhasesStart);
    std::printf("  %-12s dispatch_exchange %.3f return_exchange %.3f  (sum %.3f)\n", "floor", mean[kFloorDispatch] * 1e3,
                mean[kFloorReturn] * 1e3, (mean[kFloorDispatch] + mean[kFloorReturn]) * 1e3);
    std::printf("  page faults in the exchange per layer, mean over ranks: forward %.1f   replayed %.1f\n",
                mean[kPageFaults], mean[kReplayPageFaults]);
    if (values.count("json")) {
      write_json_report(values["json"].as<std::string>(),
                        {{"token",
                          {{"remote_bytes_per_token", bytes_per_token},
                           {"messages_per_step", messages_per_step},
                           {"peers_per_step", peers_per_step},
                           {"seconds_per_layer", exchange},
                           {"expert_seconds_per_layer", experts},
                           {"counts_exchanges_per_step", static_cast<double>(statistics.counts_exchanges) / calls},
                           // Seconds per layer, mean over ranks; the phases add up to "total".
                           {"breakdown", phases_json(mean, kPhasesStart)},
                           {"page_faults_per_layer", mean[kPageFaults]},
                           {"replay",
                            {{"seconds_per_layer", replay},
                             {"breakdown", phases_json(mean, kReplayPhasesStart)},
                             {"page_faults_per_layer", mean[kReplayPageFaults]}}}}},
                         {"floor",
                          {{"seconds_per_layer", floor},
                           {"breakdown",
                            {{"dispatch_exchange", mean[kFloorDispatch]},
                             {"return_exchange", mean[kFloorReturn]},
                             {"total", mean[kFloorDispatch] + mean[kFloorReturn]}}}}},
                         {"ratio_to_floor", exchange / floor},
                         {"replay_ratio_to_floor", replay / floor},
                         {"warmups", warmups},
                         {"forwards", repeats},
                         {"replays", replays},
                         {"world_size", world.size()},
                         {"ep_size", model->grid->shape().ep_size},
                         {"tokens_per_step", batch * time}});
    }
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
