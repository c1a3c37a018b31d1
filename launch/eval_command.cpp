// temoe eval: a trained controller (or none) on held-out data against the baselines of
// DESIGN.md section 1, all on the same tokens: plain top-k, one fixed mask per sequence, random
// switching at the controller's measured rate in each layer, the greedy cache swept over its
// decay (a front), and, where the data carry domain labels, the segment oracle.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/learner/controller_file.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/training_setup.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/learner/baseline_policies.hpp"
#include "src/learner/controller_policy.hpp"
#include "src/learner/routing_statistics.hpp"
#include "src/learner/student_rollout.hpp"

namespace temoe::launch {

namespace {

// Global figures of one policy over all evaluation batches.
struct PolicyScore {
  double tokens = 0, kl = 0, student_correct = 0, teacher_correct = 0, agreement = 0, nll_gap = 0;
  double transitions = 0, switches = 0, options = 0, experts_loaded = 0;
  std::vector<double> layer_transitions, layer_switches;  // [layers]
  std::vector<double> expert_uses;  // [layers * E]
  double distinct_masks = 0;        // summed over layers, this rank's sequences
  // Other ranks than the sequence's own that own experts of the held mask, summed over masked
  // positions and layers (expert parallelism only).
  double remote_ranks = 0, masked_positions = 0;

  void add_layer_counts(const RoutingCounts& counts, int64_t layer, int64_t experts) {
    transitions += counts.transitions;
    switches += counts.switches;
    options += counts.options;
    experts_loaded += counts.experts_loaded;
    layer_transitions[static_cast<size_t>(layer)] += counts.transitions;
    layer_switches[static_cast<size_t>(layer)] += counts.switches;
    distinct_masks += static_cast<double>(counts.distinct_masks.size());
    for (int64_t e = 0; e < experts; ++e) expert_uses[static_cast<size_t>(layer * experts + e)] += counts.expert_uses[e];
  }
  void all_reduce(Communicator& world) {
    std::vector<double> values = {tokens,   kl,      student_correct, teacher_correct, transitions,  switches,
                                  options,  remote_ranks, masked_positions, agreement,   nll_gap, experts_loaded};
    const size_t scalars = values.size();
    values.insert(values.end(), expert_uses.begin(), expert_uses.end());
    values.insert(values.end(), layer_transitions.begin(), layer_transitions.end());
    values.insert(values.end(), layer_switches.begin(), layer_switches.end());
    world.all_reduce_sum(std::span<double>(values));
    tokens = values[0], kl = values[1], student_correct = values[2], teacher_correct = values[3];
    transitions = values[4], switches = values[5], options = values[6];
    remote_ranks = values[7], masked_positions = values[8], agreement = values[9], nll_gap = values[10];
    experts_loaded = values[11];
    auto next = values.begin() + static_cast<std::ptrdiff_t>(scalars);
    for (auto* part : {&expert_uses, &layer_transitions, &layer_switches}) {
      std::copy(next, next + static_cast<std::ptrdiff_t>(part->size()), part->begin());
      next += static_cast<std::ptrdiff_t>(part->size());
    }
  }
  double switch_rate() const { return transitions > 0 ? switches / transitions : 0.0; }
  std::vector<double> switch_rate_per_layer() const {
    std::vector<double> rates;
    for (size_t l = 0; l < layer_switches.size(); ++l) rates.push_back(layer_transitions[l] > 0 ? layer_switches[l] / layer_transitions[l] : 0.0);
    return rates;
  }
  nlohmann::json to_json(int64_t layers, int64_t experts) const {
    double entropy = 0;
    for (int64_t layer = 0; layer < layers; ++layer) {
      RoutingCounts counts;
      counts.expert_uses.assign(expert_uses.begin() + layer * experts, expert_uses.begin() + (layer + 1) * experts);
      entropy += counts.utilization_entropy() / static_cast<double>(layers);
    }
    return {{"switch_rate", switch_rate()},
            {"switch_rate_per_layer", switch_rate_per_layer()},
            {"kl", kl / std::max(tokens, 1.0)},
            {"top1_agreement", agreement / std::max(tokens, 1.0)},
            {"nll_gap", nll_gap / std::max(tokens, 1.0)},
            {"experts_loaded_per_switch", switches > 0 ? experts_loaded / switches : 0.0},
            {"retention", teacher_correct > 0 ? student_correct / teacher_correct : 0.0},
            {"mean_option_duration", options > 0 ? tokens * static_cast<double>(layers) / options : 0.0},
            {"utilization_entropy", entropy},
            {"distinct_masks_rank0", distinct_masks / static_cast<double>(layers)},
            {"remote_ranks_per_mask", masked_positions > 0 ? remote_ranks / masked_positions : 0.0},
            {"student_accuracy", student_correct / std::max(tokens, 1.0)},
            {"teacher_accuracy", teacher_correct / std::max(tokens, 1.0)}};
  }
};

// "0,0.5,0.9" -> {0, 0.5, 0.9}; each decay in [0, 1).
std::vector<double> parse_cache_decays(const std::string& text) {
  std::vector<double> decays;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    double decay = -1;
    try {
      decay = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || !(decay >= 0 && decay < 1)) {
      TEMOE_FAIL("eval.cache_decays = '" << text << "': '" << item << "' is not a decay in [0, 1)");
    }
    decays.push_back(decay);
  }
  return decays;
}

// KL of a front at `rate`, linear between the two points around it (by switch rate); none when
// the rate lies outside the front.
std::optional<double> interpolate_front(std::vector<std::pair<double, double>> points, double rate) {
  std::sort(points.begin(), points.end());
  for (size_t i = 0; i + 1 < points.size(); ++i) {
    const auto [r0, kl0] = points[i];
    const auto [r1, kl1] = points[i + 1];
    if (rate < r0 || rate > r1) continue;
    return r1 > r0 ? kl0 + (kl1 - kl0) * (rate - r0) / (r1 - r0) : std::min(kl0, kl1);
  }
  return std::nullopt;
}

}  // namespace

int run_eval(const Arguments& arguments) {
  po::options_description options("temoe eval");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("run-dir", po::value<std::string>(), "a training run whose controller.h5 is evaluated (without: baselines only)")
      ("json", po::value<std::string>(), "write the figures to this JSON file")
      ("adapters", po::value<std::string>(), "a PEFT LoRA adapter directory: every masked student runs with it, the teacher without");
  const auto parsed = parse_command_line("eval", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe eval --config FILE [--run-dir DIR] [--adapters DIR] --json FILE", options);
    return 0;
  }
  const auto& values = parsed.values;
  apply_thread_settings(values);
  TrainerConfig config = trainer_config_from(values);
  std::filesystem::path run_directory;
  if (values.count("run-dir")) {
    run_directory = values["run-dir"].as<std::string>();
    config.controller = controller_config_of_run(run_directory, config.controller, "eval");
  }
  const int64_t global_batch = values["train.batch_size"].as<int64_t>(), time = values["train.sequence_length"].as<int64_t>();
  const int64_t batches = values["eval.batches"].as<int64_t>();

  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  if (global_batch % world.size() != 0) {
    TEMOE_FAIL("train.batch_size = " << global_batch << " is not a multiple of the " << world.size() << " ranks");
  }
  auto model = load_distributed_model(model_directory_from(values, "eval"),
                                      parse_device(values["runtime.device"].as<std::string>()), world,
                                      values["parallel.ep_size"].as<int>(),
                                      values["parallel.placement"].as<std::string>(),
                                      values.count("adapters") ? values["adapters"].as<std::string>() : std::string());
  set_dispatch_mode(*model, values["parallel.dispatch"].as<std::string>());
  const ModelConfig& model_config = model->config;
  model->transformer->set_adapters_enabled(false);  // the teacher is the frozen model; students switch them on
  const data::TokenDataset dataset = read_training_data(values, true, "eval");
  // A different order than training's (the held-out file is the usual protection; this is the second).
  data::BatchSampler sampler(dataset, {time, config.seed + 0x9E3779B9ull, true});
  const auto slice = data::data_parallel_slice(global_batch, world.rank(), world.size());

  ParameterSet parameters;
  auto controllers = make_controllers(parameters, model_config, config.controller, config.seed);
  const bool trained = !run_directory.empty();
  if (trained) load_controller(controller_file(run_directory), parameters);

  const int64_t layers = model_config.num_layers, experts = model_config.num_experts, k_hat = config.controller.k_hat;
  const auto fresh_score = [&] {
    PolicyScore score;
    score.expert_uses.assign(static_cast<size_t>(layers * experts), 0.0);
    score.layer_transitions.assign(static_cast<size_t>(layers), 0.0);
    score.layer_switches.assign(static_cast<size_t>(layers), 0.0);
    return score;
  };
  // The evaluation batches and the teacher's rollout of each, computed once for every policy.
  std::vector<data::SequenceBatch> eval_batches;
  std::vector<Rollout> teachers;
  for (int64_t index = 0; index < batches; ++index) {
    eval_batches.push_back(sampler.batch(index, global_batch, slice.first, slice.count));
    const data::SequenceBatch& batch = eval_batches.back();
    teachers.push_back(run_rollout(*model->transformer, batch.tokens, batch.batch, batch.time, nullptr, batch.global_index, index));
    teachers.back().hidden.clear();  // only the logits and the chosen experts are kept
  }
  SegmentOraclePolicy* oracle_to_feed = nullptr;  // set while the segment oracle is scored
  // Scores `policy` (nullptr: the teacher) over every evaluation batch.
  const auto score_policy = [&](MaskPolicy* policy) {
    PolicyScore score = fresh_score();
    for (int64_t index = 0; index < batches; ++index) {
      const data::SequenceBatch& batch = eval_batches[static_cast<size_t>(index)];
      const Rollout& teacher = teachers[static_cast<size_t>(index)];
      if (oracle_to_feed) oracle_to_feed->set_domains(batch.topics);
      Rollout masked;
      if (policy) {
        model->transformer->set_adapters_enabled(true);
        masked = run_rollout(*model->transformer, batch.tokens, batch.batch, batch.time, policy, batch.global_index, index);
        model->transformer->set_adapters_enabled(false);
      }
      const Rollout& student = policy ? masked : teacher;
      const TokenScores scores = score_tokens(*model->backend, teacher.logits, student.logits, batch.targets, config.reward);
      for (size_t i = 0; i < scores.kl.size(); ++i) {
        score.tokens += 1;
        score.kl += scores.kl[i];
        score.student_correct += scores.student_correct[i];
        score.teacher_correct += scores.teacher_correct[i];
        score.agreement += scores.agreement[i];
        score.nll_gap += scores.nll_gap[i];
      }
      if (policy && model->dispatcher) {  // the masks' remote ranks, priced as the communication cost is
        const auto remote = communication_costs(student, 1.0, model->dispatcher->placement().owners(),
                                                model->grid->ep_rank());
        for (const double ranks : remote) score.remote_ranks += ranks;
        score.masked_positions += static_cast<double>(remote.size());
      }
      for (int64_t layer = 0; layer < layers; ++layer) {
        const auto l = static_cast<size_t>(layer);
        const RoutingCounts counts =
            policy ? count_masked_routing(student.decisions[l], student.chosen_experts[l], batch.batch, batch.time, experts,
                                          model_config.top_k)
                   : count_top_k_routing(student.chosen_experts[l], batch.batch, batch.time, experts, model_config.top_k);
        score.add_layer_counts(counts, layer, experts);
      }
    }
    score.all_reduce(world);
    return score;
  };

  // How much the teacher's experts tell about the hidden topic (when the data carry topic labels):
  // I(topic; expert) per layer, in nats, over every routed slot of the evaluation batches.
  std::vector<double> topic_expert_mutual_information;
  if (dataset.has_topics()) {
    const int64_t topics = dataset.topic_count;
    std::vector<double> joint(static_cast<size_t>(layers * topics * experts), 0.0);
    for (int64_t index = 0; index < batches; ++index) {
      const data::SequenceBatch& batch = eval_batches[static_cast<size_t>(index)];
      const Rollout& teacher = teachers[static_cast<size_t>(index)];
      for (int64_t layer = 0; layer < layers; ++layer) {
        const auto& chosen = teacher.chosen_experts[static_cast<size_t>(layer)];
        for (size_t slot = 0; slot < chosen.size(); ++slot) {
          const int64_t topic = batch.topics[slot / static_cast<size_t>(model_config.top_k)];
          if (topic >= 0) joint[static_cast<size_t>((layer * topics + topic) * experts + chosen[slot])] += 1;
        }
      }
    }
    world.all_reduce_sum(std::span<double>(joint));
    for (int64_t layer = 0; layer < layers; ++layer) {
      const double* table = joint.data() + layer * topics * experts;
      double total = 0;
      std::vector<double> by_topic(static_cast<size_t>(topics), 0.0), by_expert(static_cast<size_t>(experts), 0.0);
      for (int64_t t = 0; t < topics; ++t) {
        for (int64_t e = 0; e < experts; ++e) {
          by_topic[t] += table[t * experts + e];
          by_expert[e] += table[t * experts + e];
          total += table[t * experts + e];
        }
      }
      double information = 0;
      for (int64_t t = 0; t < topics; ++t) {
        for (int64_t e = 0; e < experts; ++e) {
          const double p = table[t * experts + e] / total;
          if (p > 0) information += p * std::log(p * total * total / (by_topic[t] * by_expert[e]));
        }
      }
      topic_expert_mutual_information.push_back(information);
    }
  }

  SelectionLocality locality;  // where the experts live, for a controller trained with a locality bias
  if (model->dispatcher) locality = {model->dispatcher->placement().owners(), model->grid->ep_rank()};
  ControllerPolicy controller_policy(controllers, /*sample=*/false, config.seed, locality);
  FixedMaskPolicy fixed(k_hat);
  GreedyCachePolicy cache(k_hat, model_config.top_k, values["eval.cache_decay"].as<double>());
  const PolicyScore top_k = score_policy(nullptr);
  const PolicyScore controller = score_policy(&controller_policy);
  // Random switching at the controller's own rate in each layer (layers switch at different rates).
  RandomSwitchPolicy random(k_hat, controller.switch_rate_per_layer(), config.seed + 17);
  const PolicyScore fixed_score = score_policy(&fixed);
  const PolicyScore random_score = score_policy(&random);
  const PolicyScore cache_score = score_policy(&cache);
  std::vector<std::pair<double, PolicyScore>> cache_front;
  for (const double decay : parse_cache_decays(values["eval.cache_decays"].as<std::string>())) {
    GreedyCachePolicy swept(k_hat, model_config.top_k, decay);
    cache_front.emplace_back(decay, score_policy(&swept));
  }
  std::optional<PolicyScore> oracle_score;
  if (dataset.has_topics()) {
    SegmentOraclePolicy oracle(k_hat, model_config.top_k);
    oracle_to_feed = &oracle;
    oracle_score = score_policy(&oracle);
    oracle_to_feed = nullptr;
  }

  if (world.rank() == 0) {
    nlohmann::json report = controller.to_json(layers, experts);
    report["trained"] = trained;
    // The students' LoRA adapters (null: the frozen model's experts alone).
    report["adapters"] = values.count("adapters") ? nlohmann::json(values["adapters"].as<std::string>()) : nlohmann::json(nullptr);
    report["k_hat"] = k_hat;
    report["tokens"] = controller.tokens;
    if (!topic_expert_mutual_information.empty()) {
      report["topic_expert_mutual_information"] = topic_expert_mutual_information;
      report["topic_entropy"] = std::log(static_cast<double>(dataset.topic_count));
    }
    report["baselines"] = {{"topk", top_k.to_json(layers, experts)},
                           {"fixed", fixed_score.to_json(layers, experts)},
                           {"random", random_score.to_json(layers, experts)},
                           {"greedy_cache", cache_score.to_json(layers, experts)}};
    nlohmann::json front = nlohmann::json::array();
    std::vector<std::pair<double, double>> front_points;  // (switch rate, KL)
    for (const auto& [decay, score] : cache_front) {
      nlohmann::json point = score.to_json(layers, experts);
      point["decay"] = decay;
      front.push_back(point);
      front_points.emplace_back(score.switch_rate(), point["kl"].get<double>());
    }
    report["baselines"]["greedy_cache_front"] = front;
    // A cache that never reloads is the fixed mask: the front's end at no switching.
    front_points.emplace_back(0.0, fixed_score.kl / std::max(fixed_score.tokens, 1.0));
    const std::optional<double> cache_kl = interpolate_front(front_points, controller.switch_rate());
    report["greedy_cache_kl_at_controller_rate"] = cache_kl ? nlohmann::json(*cache_kl) : nlohmann::json(nullptr);
    if (oracle_score) report["baselines"]["segment_oracle"] = oracle_score->to_json(layers, experts);
    std::printf("temoe eval: %s, k_hat %lld, %.0f held-out tokens\n", trained ? run_directory.c_str() : "(untrained controller)",
                static_cast<long long>(k_hat), controller.tokens);
    std::printf("  %-18s %12s %10s %10s %10s %10s %10s %10s %10s\n", "policy", "switch rate", "KL", "retention", "agreement",
                "NLL gap", "loaded", "duration", "entropy");
    const auto row = [](const std::string& name, const nlohmann::json& j) {
      std::printf("  %-18s %11.2f%% %10.4f %9.1f%% %9.1f%% %10.4f %10.2f %10.2f %10.3f\n", name.c_str(),
                  100.0 * j["switch_rate"].get<double>(), j["kl"].get<double>(), 100.0 * j["retention"].get<double>(),
                  100.0 * j["top1_agreement"].get<double>(), j["nll_gap"].get<double>(),
                  j["experts_loaded_per_switch"].get<double>(), j["mean_option_duration"].get<double>(),
                  j["utilization_entropy"].get<double>());
    };
    row("controller", report);
    row("top-k", report["baselines"]["topk"]);
    row("fixed", report["baselines"]["fixed"]);
    row("random", report["baselines"]["random"]);
    row("greedy cache", report["baselines"]["greedy_cache"]);
    for (const auto& point : front) row("  cache decay " + std::to_string(point["decay"].get<double>()).substr(0, 5), point);
    if (oracle_score) row("segment oracle", report["baselines"]["segment_oracle"]);
    std::printf("  teacher accuracy %.1f%%; greedy cache's KL at the controller's switch rate: %s\n",
                100.0 * report["teacher_accuracy"].get<double>(),
                cache_kl ? std::to_string(*cache_kl).c_str() : "outside the front");
    if (!topic_expert_mutual_information.empty()) {
      std::printf("  topic/expert mutual information per layer (nats, of at most %.2f):", std::log(double(dataset.topic_count)));
      for (double information : topic_expert_mutual_information) std::printf(" %.3f", information);
      std::printf("\n");
    }
    if (values.count("json")) write_json_report(values["json"].as<std::string>(), report);
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
