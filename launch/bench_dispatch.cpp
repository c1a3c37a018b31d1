// temoe bench dispatch: token-mode expert dispatch under mpirun. Runs forwards of the model on
// random tokens with the experts spread over the ranks, reports traffic (remote bytes per token,
// messages and peers per layer call) and time in the exchange per MoE layer, and replays the very
// same byte matrices through plain MPI_Alltoallv calls: the collective's floor, so the dispatcher's
// overhead is a ratio measured in the same run.
#include <algorithm>
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

// Seconds per call of the plain all-to-all-v carrying each recorded call's dispatch and return
// bytes (the counts are exchanged beforehand, outside the timing).
double plain_all_to_all_seconds(Communicator& communicator, const DispatchStatistics& statistics) {
  const auto ranks = static_cast<size_t>(communicator.size());
  double seconds = 0;
  for (size_t call = 0; call < statistics.call_dispatch_bytes.size(); ++call) {
    for (const auto* matrix_row : {&statistics.call_dispatch_bytes[call], &statistics.call_return_bytes[call]}) {
      std::vector<int64_t> receive_bytes(ranks);
      communicator.all_to_all(std::as_bytes(std::span<const int64_t>(*matrix_row)),
                              std::as_writable_bytes(std::span<int64_t>(receive_bytes)), sizeof(int64_t));
      std::vector<size_t> send_counts(ranks), send_offsets(ranks), receive_counts(ranks), receive_offsets(ranks);
      size_t send_total = 0, receive_total = 0;
      for (size_t r = 0; r < ranks; ++r) {
        send_counts[r] = static_cast<size_t>((*matrix_row)[r]);
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
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  return seconds / static_cast<double>(std::max<size_t>(statistics.call_dispatch_bytes.size(), 1));
}

}  // namespace

int bench_dispatch(const Arguments& arguments) {
  po::options_description options("temoe bench dispatch");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("batch", po::value<int64_t>()->default_value(0), "sequences in all (0: one per rank)")
      ("time", po::value<int64_t>()->default_value(256), "tokens per sequence")
      ("repeats", po::value<int>()->default_value(3), "timed forwards (after one warm-up)")
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

  model->transformer->forward(mine, last - first, time);  // warm-up
  model->dispatcher->reset_statistics(/*record_calls=*/true);
  model->dispatcher->set_barrier_before_exchange(true);
  world.barrier();
  for (int r = 0; r < repeats; ++r) model->transformer->forward(mine, last - first, time);
  const DispatchStatistics statistics = model->dispatcher->statistics();
  Communicator& group = model->grid->expert_parallel();
  const double floor_seconds = plain_all_to_all_seconds(group, statistics);

  // Sums over all ranks; times are the slowest rank's (everyone waits for it).
  const auto calls = static_cast<double>(statistics.layer_calls);
  double sums[4] = {static_cast<double>(statistics.remote_bytes_sent), static_cast<double>(statistics.tokens),
                    static_cast<double>(statistics.messages), static_cast<double>(statistics.peers)};
  world.all_reduce_sum(std::span<double>(sums, 4));
  std::vector<double> times = {statistics.exchange_seconds / calls, floor_seconds, statistics.expert_seconds / calls};
  std::vector<double> all_times(times.size() * static_cast<size_t>(world.size()));
  {
    const auto gathered = world.gather_v(std::as_bytes(std::span<const double>(times)), 0);
    if (world.rank() == 0) std::memcpy(all_times.data(), gathered.data(), gathered.size());
  }
  if (world.rank() == 0) {
    double exchange = 0, floor = 0, experts = 0;
    for (int r = 0; r < world.size(); ++r) {
      exchange = std::max(exchange, all_times[static_cast<size_t>(r) * 3]);
      floor = std::max(floor, all_times[static_cast<size_t>(r) * 3 + 1]);
      experts = std::max(experts, all_times[static_cast<size_t>(r) * 3 + 2]);
    }
    const double bytes_per_token = sums[0] / sums[1];
    const double messages_per_step = sums[2] / calls;
    const double peers_per_step = sums[3] / calls / world.size();
    std::printf("bench dispatch: %s, %d ranks (ep %d), %lld x %lld tokens, %d forwards x %lld layers\n",
                to_string(model->config.architecture).c_str(), world.size(), model->grid->shape().ep_size,
                static_cast<long long>(batch), static_cast<long long>(time), repeats,
                static_cast<long long>(model->config.num_layers));
    std::printf("  token mode   remote bytes/token %10.1f   messages/layer %6.2f   peers/rank/layer %5.2f\n",
                bytes_per_token, messages_per_step, peers_per_step);
    std::printf("               exchange %8.3f ms/layer   (experts %8.3f ms/layer)\n", exchange * 1e3, experts * 1e3);
    std::printf("  floor        plain MPI_Alltoallv of the same bytes %8.3f ms/layer   dispatcher/floor %.2fx\n",
                floor * 1e3, exchange / floor);
    if (values.count("json")) {
      write_json_report(values["json"].as<std::string>(),
                        {{"token",
                          {{"remote_bytes_per_token", bytes_per_token},
                           {"messages_per_step", messages_per_step},
                           {"peers_per_step", peers_per_step},
                           {"seconds_per_layer", exchange},
                           {"expert_seconds_per_layer", experts},
                           {"counts_exchanges_per_step", static_cast<double>(statistics.counts_exchanges) / calls}}},
                         {"floor", {{"seconds_per_layer", floor}}},
                         {"ratio_to_floor", exchange / floor},
                         {"world_size", world.size()},
                         {"ep_size", model->grid->shape().ep_size},
                         {"tokens_per_step", batch * time}});
    }
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
