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
// it. The replayed ratio is the dispatcher's own overhead over the plain collective. Option mode's
// calls (teacher-forced and decode, with the masks they held) are replayed the same way,
// interleaved with token mode's, so the option/token time ratios compare the dispatch paths under
// the same conditions too.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <tuple>

#include "launch/benchmarks.hpp"
#include "launch/command_line.hpp"
#include "launch/dispatch_workloads.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/random_tokens.hpp"
#include "launch/training_setup.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/data/batch_sampler.hpp"
#include "src/learner/baseline_policies.hpp"
#include "src/learner/controller_file.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/student_rollout.hpp"

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
    hidden_.fill(1.0f);
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
    // An option-mode call replays with the masks it held, so it goes through the layer's held
    // plan again: rebuilt where they switched, renegotiated where bounds changed.
    const int64_t layer = recorded_.call_held_layer.at(call);
    const HeldMasksView held{layer, recorded_.call_held_flags.at(call)};
    // As the model's layers call it: the results stay where they land, the combine reads them there.
    dispatcher_.dispatch_to_rows(hidden_.rows(0, tokens), experts, top_k_, landed_, copy_, layer >= 0 ? &held : nullptr);
  }
  size_t calls() const { return recorded_.call_experts.size(); }

 private:
  TokenDispatcher& dispatcher_;
  const DispatchStatistics& recorded_;
  int64_t top_k_;
  Tensor hidden_;
  SlotRows landed_;
  LocalExpertFunction copy_;
};

// `passes` passes over two recorded call sequences, interleaved call by call (the longer one's
// extra calls run alone), so that both see the same conditions; `alongside(call)` runs right
// after each of the first's calls.
void replay_interleaved(DispatchReplay& first, DispatchReplay& second, int passes,
                        const std::function<void(size_t)>& alongside = {}) {
  for (int pass = 0; pass < passes; ++pass) {
    for (size_t call = 0; call < std::max(first.calls(), second.calls()); ++call) {
      if (call < first.calls()) {
        first.run(call);
        if (alongside) alongside(call);
      }
      if (call < second.calls()) second.run(call);
    }
  }
}

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
  kOptionReplay,      // option mode's teacher-forced calls replayed, interleaved with token mode's
  kTokenDecodeReplay, // the decode steps' calls replayed, token and option mode interleaved
  kOptionDecodeReplay,
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
      ("replays", po::value<int>()->default_value(10),
       "passes over the forwards' layer calls, each replayed through the dispatcher and through the plain "
       "all-to-all (interleaved, call by call)")
      ("seed", po::value<uint64_t>()->default_value(7), "seed of the random tokens (without data.path)")
      ("run-dir", po::value<std::string>(),
       "option mode holds the masks of this run's trained controllers (without: the greedy cache heuristic's)")
      ("decode-prompt", po::value<int64_t>()->default_value(0),
       "decode steps start after this many prompt positions (0: rollout.prompt_length)")
      ("json", po::value<std::string>(), "also write the figures to this JSON file (rank 0)");
  const auto parsed = parse_command_line("bench dispatch", arguments, options);
  if (parsed.help) {
    std::cout << command_help(
        "mpirun -np N temoe bench dispatch (--model DIR | --config FILE) [--run-dir DIR] [--parallel.placement FILE] "
        "[--json FILE]",
        options);
    return 0;
  }
  const auto& values = parsed.values;
  std::string model_dir = values.count("model") ? values["model"].as<std::string>()
                          : values.count("model.dir") ? values["model.dir"].as<std::string>() : "";
  if (model_dir.empty()) TEMOE_FAIL("temoe bench dispatch: --model DIR (or model.dir in --config FILE) is required");
  apply_thread_settings(values);
  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  const Device device = parse_device(values["runtime.device"].as<std::string>());
  auto model = load_distributed_model(model_dir, device, world, values["parallel.ep_size"].as<int>());
  if (!model->dispatcher) TEMOE_FAIL("temoe bench dispatch: needs an expert-parallel size above 1 (run under mpirun -np N)");
  const int64_t batch = values["batch"].as<int64_t>() > 0 ? values["batch"].as<int64_t>() : world.size();
  const int64_t time = values["time"].as<int64_t>();
  const int repeats = values["repeats"].as<int>();
  const int warmups = values["warmups"].as<int>();
  // Option mode runs on a second copy of the model, laid out by parallel.placement (contiguous
  // without one); token mode keeps the contiguous layout: the baseline.
  const std::string placement_path = values["parallel.placement"].as<std::string>();
  auto placed = load_distributed_model(model_dir, device, world, values["parallel.ep_size"].as<int>(), placement_path);
  placed->dispatcher->set_mode(DispatchMode::option);

  // The same sequences for every mode: data.path's when the configuration names one, else random.
  const int64_t first = batch * world.rank() / world.size(), last = batch * (world.rank() + 1) / world.size();
  const int64_t local_batch = last - first;
  struct LocalBatch {
    std::vector<int32_t> tokens;        // [local_batch, time]
    std::vector<int64_t> global_index;  // [local_batch]
  };
  std::vector<LocalBatch> batches(static_cast<size_t>(warmups + repeats));
  const std::string data_path = values.count("data.path") ? values["data.path"].as<std::string>() : "";
  std::optional<data::TokenDataset> dataset;
  std::optional<data::BatchSampler> sampler;
  if (!data_path.empty()) {
    dataset = read_training_data(values, false, "bench dispatch");
    sampler.emplace(*dataset, data::SamplerOptions{time, values["seed"].as<uint64_t>(), true});
  }
  const auto slice = sampler ? data::data_parallel_slice(batch, world.rank(), world.size()) : data::SequenceRange{};
  for (size_t index = 0; index < batches.size(); ++index) {
    LocalBatch& local = batches[index];
    if (sampler) {
      data::SequenceBatch sequences = sampler->batch(static_cast<int64_t>(index), batch, slice.first, slice.count);
      local.tokens = std::move(sequences.tokens);
      local.global_index = std::move(sequences.global_index);
    } else {
      const TokenArray tokens = random_tokens(batch, time, model->config.vocab_size, values["seed"].as<uint64_t>() + index);
      local.tokens.assign(tokens.ids.begin() + first * time, tokens.ids.begin() + last * time);
      for (int64_t b = first; b < last; ++b) local.global_index.push_back(static_cast<int64_t>(index) * batch + b);
    }
  }
  const auto measured = [&](int r) -> const LocalBatch& { return batches[static_cast<size_t>(warmups + r)]; };

  // Who holds the masks in option mode.
  ParameterSet controller_parameters;
  std::vector<OptionController> controllers;
  std::unique_ptr<MaskPolicy> policy;
  std::string policy_name = "greedy_cache";
  TrainerConfig trainer = trainer_config_from(values);
  if (values.count("run-dir")) {
    const std::filesystem::path run_directory = values["run-dir"].as<std::string>();
    trainer.controller = controller_config_of_run(run_directory, trainer.controller, "bench dispatch");
    controllers = make_controllers(controller_parameters, placed->config, trainer.controller, trainer.seed);
    load_controller(controller_file(run_directory), controller_parameters);
    policy = std::make_unique<ControllerPolicy>(
        controllers, /*sample=*/false, trainer.seed,
        SelectionLocality{placed->dispatcher->placement().owners(), placed->grid->ep_rank()});
    policy_name = run_directory.string();
  } else {
    policy = std::make_unique<GreedyCachePolicy>(trainer.controller.k_hat, placed->config.top_k,
                                                 values["eval.cache_decay"].as<double>());
  }
  const int64_t prompt = values["decode-prompt"].as<int64_t>() > 0 ? values["decode-prompt"].as<int64_t>()
                                                                     : values["rollout.prompt_length"].as<int64_t>();
  if (prompt < 1 || prompt >= time) {
    TEMOE_FAIL("temoe bench dispatch: decode prompt of " << prompt << " positions; expected 1 <= prompt < --time = " << time);
  }

  for (int r = 0; r < warmups; ++r) {
    const LocalBatch& local = batches[static_cast<size_t>(r)];
    model->transformer->forward(local.tokens, local_batch, time);
    run_rollout(*placed->transformer, local.tokens, local_batch, time, policy.get(), local.global_index, r);
  }
  model->dispatcher->reset_statistics(/*record_calls=*/true);
  model->dispatcher->set_barrier_before_exchange(true);
  world.barrier();
  for (int r = 0; r < repeats; ++r) model->transformer->forward(measured(r).tokens, local_batch, time);
  const DispatchStatistics statistics = model->dispatcher->statistics();

  // Option mode, teacher-forced: the policy's rollouts of the same sequences on the placed model.
  placed->dispatcher->set_barrier_before_exchange(true);
  placed->dispatcher->reset_statistics(/*record_calls=*/true);
  world.barrier();
  std::vector<LayerDecisions> held_first;  // the masks held over the first measured batch, for decoding it
  SwitchCount switches;
  for (int r = 0; r < repeats; ++r) {
    Rollout rollout = run_rollout(*placed->transformer, measured(r).tokens, local_batch, time, policy.get(),
                                  measured(r).global_index, warmups + r);
    const SwitchCount count = count_switches(rollout.decisions, local_batch, time);
    switches.switches += count.switches;
    switches.positions += count.positions;
    if (r == 0) held_first = std::move(rollout.decisions);
  }
  const DispatchStatistics option_statistics = placed->dispatcher->statistics();
  const ModeFigures option_forward = summarize_dispatch(option_statistics, world);
  const ModeFigures token_forward = summarize_dispatch(statistics, world);

  // Decode steps of the first measured batch: one position per sequence per step after the
  // prompt, token mode with plain top-k, option mode inside the masks held above.
  const std::span<const int32_t> decoded(measured(0).tokens);
  decode_positions(*model->transformer, decoded, local_batch, time, prompt, nullptr, [&] {
    model->dispatcher->reset_statistics(/*record_calls=*/true);
    world.barrier();
  });
  const DispatchStatistics token_decode_statistics = model->dispatcher->statistics();
  const ModeFigures token_decode = summarize_dispatch(token_decode_statistics, world);
  decode_positions(*placed->transformer, decoded, local_batch, time, prompt, &held_first, [&] {
    placed->dispatcher->reset_statistics(/*record_calls=*/true);
    world.barrier();
  });
  const DispatchStatistics option_decode_statistics = placed->dispatcher->statistics();
  const ModeFigures option_decode = summarize_dispatch(option_decode_statistics, world);

  // The replays, interleaved call by call so that all see the same conditions: token mode's
  // teacher-forced calls with the floor's all-to-alls of the same bytes and with option mode's
  // calls, then both modes' decode calls. The forwards above charge the exchange with waiting for
  // descheduled ranks (4 ranks on 2 cores); the replays compare the dispatch paths themselves.
  Communicator& group = model->grid->expert_parallel();
  const int replays = std::max(values["replays"].as<int>(), 1);
  double floor_dispatch = 0, floor_return = 0;
  DispatchStatistics replayed, option_replayed, token_decode_replayed, option_decode_replayed;
  {
    DispatchReplay token_calls(*model->dispatcher, statistics, model->config.hidden_size, model->config.top_k);
    DispatchReplay option_calls(*placed->dispatcher, option_statistics, model->config.hidden_size, model->config.top_k);
    replay_interleaved(token_calls, option_calls, replays, [&](size_t call) {
      floor_dispatch += plain_all_to_all_seconds(group, statistics.call_dispatch_bytes[call]);
      floor_return += plain_all_to_all_seconds(group, statistics.call_return_bytes[call]);
    });
    replayed = model->dispatcher->statistics();
    option_replayed = placed->dispatcher->statistics();
  }
  {
    DispatchReplay token_calls(*model->dispatcher, token_decode_statistics, model->config.hidden_size, model->config.top_k);
    DispatchReplay option_calls(*placed->dispatcher, option_decode_statistics, model->config.hidden_size,
                                model->config.top_k);
    replay_interleaved(token_calls, option_calls, replays);
    token_decode_replayed = model->dispatcher->statistics();
    option_decode_replayed = placed->dispatcher->statistics();
  }
  SwitchCount decode_switches = count_switches(held_first, local_batch, time, prompt);
  double switch_sums[4] = {switches.switches, switches.positions, decode_switches.switches, decode_switches.positions};
  world.all_reduce_sum(std::span<double>(switch_sums, 4));
  const double forward_switch_rate = switch_sums[0] / std::max(switch_sums[1], 1.0);
  const double decode_switch_rate = switch_sums[2] / std::max(switch_sums[3], 1.0);

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
  const auto seconds_per_call = [](const DispatchStatistics& replay) {
    return replay.exchange_seconds / static_cast<double>(std::max<int64_t>(replay.layer_calls, 1));
  };
  times[kOptionReplay] = seconds_per_call(option_replayed);
  times[kTokenDecodeReplay] = seconds_per_call(token_decode_replayed);
  times[kOptionDecodeReplay] = seconds_per_call(option_decode_replayed);
  std::vector<RankTimes> all_times(static_cast<size_t>(world.size()));
  {
    const auto gathered = world.gather_v(std::as_bytes(std::span<const double>(times)), 0);
    if (world.rank() == 0) std::memcpy(all_times.data(), gathered.data(), gathered.size());
  }
  if (world.rank() == 0) {
    double exchange = 0, replay = 0, floor = 0, experts = 0;
    double option_replay = 0, token_decode_replay = 0, option_decode_replay = 0;
    RankTimes mean{};
    for (const RankTimes& rank_times : all_times) {
      exchange = std::max(exchange, rank_times[kExchange]);
      replay = std::max(replay, rank_times[kReplay]);
      option_replay = std::max(option_replay, rank_times[kOptionReplay]);
      token_decode_replay = std::max(token_decode_replay, rank_times[kTokenDecodeReplay]);
      option_decode_replay = std::max(option_decode_replay, rank_times[kOptionDecodeReplay]);
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
    const auto print_mode = [](const char* label, const ModeFigures& figures) {
      std::printf("  %-26s remote bytes/token %9.1f  messages/layer %6.2f  peers/rank/layer %5.2f  counts skipped %5.1f%%"
                  "  exchange %7.3f ms/layer\n",
                  label, figures.remote_bytes_per_token, figures.messages_per_step, figures.peers_per_step,
                  100 * figures.counts_exchange_skipped_fraction, figures.seconds_per_layer * 1e3);
    };
    const auto ratio = [](double option, double token) { return token > 0 ? option / token : 0.0; };
    std::printf("token vs option mode (%s masks, k_hat %lld, placement %s), same sequences:\n", policy_name.c_str(),
                static_cast<long long>(trainer.controller.k_hat), placement_path.empty() ? "contiguous" : placement_path.c_str());
    print_mode("token, teacher-forced", token_forward);
    print_mode("option, teacher-forced", option_forward);
    print_mode("token, decode", token_decode);
    print_mode("option, decode", option_decode);
    std::printf("  switch rate: teacher-forced %.2f%%, decode steps %.2f%%\n", 100 * forward_switch_rate,
                100 * decode_switch_rate);
    for (const auto& [label, token_figures, option_figures, token_replay, option_replay_seconds] :
         {std::tuple<const char*, const ModeFigures*, const ModeFigures*, double, double>{
              "teacher-forced", &token_forward, &option_forward, replay, option_replay},
          {"decode", &token_decode, &option_decode, token_decode_replay, option_decode_replay}}) {
      std::printf("  option/token, %-14s remote bytes %.3fx  messages %.3fx  time per layer %.3fx in the forward,"
                  " %.3fx replayed (%.3f vs %.3f ms)\n",
                  label, ratio(option_figures->remote_bytes_per_token, token_figures->remote_bytes_per_token),
                  ratio(option_figures->messages_per_step, token_figures->messages_per_step),
                  ratio(option_figures->seconds_per_layer, token_figures->seconds_per_layer),
                  ratio(option_replay_seconds, token_replay), option_replay_seconds * 1e3, token_replay * 1e3);
    }
    // The cluster model: each rank's measured traffic priced at 8, 64 and 512 ranks.
    const std::vector<ClusterProfile> profiles = named_cluster_profiles();
    const int modelled_ranks[3] = {8, 64, 512};
    nlohmann::json modelled = {{"profile", profiles.front().name}, {"ranks", modelled_ranks}};
    nlohmann::json by_profile;
    for (const ClusterProfile& profile : profiles) {
      nlohmann::json entry;
      for (const auto& [workload, token_figures, option_figures] :
           {std::tuple<const char*, const ModeFigures*, const ModeFigures*>{"teacher_forced", &token_forward, &option_forward},
            {"decode", &token_decode, &option_decode}}) {
        std::vector<double> token_seconds, option_seconds;
        for (const int ranks : modelled_ranks) {
          token_seconds.push_back(modelled_layer_seconds(*token_figures, ranks, profile));
          option_seconds.push_back(modelled_layer_seconds(*option_figures, ranks, profile));
        }
        entry[workload] = {{"token", token_seconds}, {"option", option_seconds}};
        std::printf("  modelled on %-18s %-14s ms/layer at 8/64/512 ranks: token %.3f %.3f %.3f  option %.3f %.3f %.3f\n",
                    profile.name.c_str(), workload, token_seconds[0] * 1e3, token_seconds[1] * 1e3, token_seconds[2] * 1e3,
                    option_seconds[0] * 1e3, option_seconds[1] * 1e3, option_seconds[2] * 1e3);
      }
      by_profile[profile.name] = entry;
    }
    modelled["token"] = by_profile[profiles.front().name]["teacher_forced"]["token"];
    modelled["option"] = by_profile[profiles.front().name]["teacher_forced"]["option"];
    modelled["decode"] = by_profile[profiles.front().name]["decode"];
    modelled["by_profile"] = by_profile;
    nlohmann::json option_json = option_forward.to_json();
    option_json["switch_rate"] = forward_switch_rate;
    option_json["decode"] = option_decode.to_json();
    option_json["decode"]["switch_rate"] = decode_switch_rate;
    option_json["placement"] = placement_path.empty() ? "contiguous" : placement_path;
    option_json["policy"] = policy_name;
    option_json["k_hat"] = trainer.controller.k_hat;
    option_json["replay_seconds_per_layer"] = option_replay;
    option_json["decode"]["replay_seconds_per_layer"] = option_decode_replay;
    const auto ratios = [&](const ModeFigures& token_figures, const ModeFigures& option_figures, double token_replay,
                            double option_replay_seconds) {
      return nlohmann::json{
          {"remote_bytes_per_token", ratio(option_figures.remote_bytes_per_token, token_figures.remote_bytes_per_token)},
          {"messages_per_step", ratio(option_figures.messages_per_step, token_figures.messages_per_step)},
          {"seconds_per_layer", ratio(option_figures.seconds_per_layer, token_figures.seconds_per_layer)},
          {"replay_seconds_per_layer", ratio(option_replay_seconds, token_replay)}};
    };
    nlohmann::json token_decode_json = token_decode.to_json();
    token_decode_json["replay_seconds_per_layer"] = token_decode_replay;
    if (values.count("json")) {
      write_json_report(values["json"].as<std::string>(),
                        {{"token",
                          {{"remote_bytes_per_token", bytes_per_token},
                           {"messages_per_step", messages_per_step},
                           {"peers_per_step", peers_per_step},
                           {"seconds_per_layer", exchange},
                           {"expert_seconds_per_layer", experts},
                           {"counts_exchanges_per_step", static_cast<double>(statistics.counts_exchanges) / calls},
                           {"counts_exchange_skipped_fraction", token_forward.counts_exchange_skipped_fraction},
                           {"decode", token_decode_json},
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
                         {"option", option_json},
                         {"option_over_token",
                          {{"teacher_forced", ratios(token_forward, option_forward, replay, option_replay)},
                           {"decode", ratios(token_decode, option_decode, token_decode_replay, option_decode_replay)}}},
                         {"modelled", modelled},
                         {"decode_prompt", prompt},
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
