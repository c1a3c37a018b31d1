// temoe eval: a trained controller (or none) on held-out data against the baselines of
// DESIGN.md section 1 (plain top-k, one fixed mask per sequence, random switching at the
// controller's measured rate, the greedy cache), all on the same tokens.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

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
  double tokens = 0, kl = 0, student_correct = 0, teacher_correct = 0;
  double transitions = 0, switches = 0, options = 0;
  std::vector<double> expert_uses;  // [layers * E]
  double distinct_masks = 0;        // summed over layers, this rank's sequences
  // Other ranks than the sequence's own that own experts of the held mask, summed over masked
  // positions and layers (expert parallelism only).
  double remote_ranks = 0, masked_positions = 0;

  void add_layer_counts(const RoutingCounts& counts, int64_t layer, int64_t experts) {
    transitions += counts.transitions;
    switches += counts.switches;
    options += counts.options;
    distinct_masks += static_cast<double>(counts.distinct_masks.size());
    for (int64_t e = 0; e < experts; ++e) expert_uses[static_cast<size_t>(layer * experts + e)] += counts.expert_uses[e];
  }
  void all_reduce(Communicator& world) {
    std::vector<double> values = {tokens,   kl,      student_correct, teacher_correct, transitions,
                                  switches, options, remote_ranks,    masked_positions};
    values.insert(values.end(), expert_uses.begin(), expert_uses.end());
    world.all_reduce_sum(std::span<double>(values));
    tokens = values[0], kl = values[1], student_correct = values[2], teacher_correct = values[3];
    transitions = values[4], switches = values[5], options = values[6];
    remote_ranks = values[7], masked_positions = values[8];
    std::copy(values.begin() + 9, values.end(), expert_uses.begin());
  }
  nlohmann::json to_json(int64_t layers, int64_t experts) const {
    double entropy = 0;
    for (int64_t layer = 0; layer < layers; ++layer) {
      RoutingCounts counts;
      counts.expert_uses.assign(expert_uses.begin() + layer * experts, expert_uses.begin() + (layer + 1) * experts);
      entropy += counts.utilization_entropy() / static_cast<double>(layers);
    }
    return {{"switch_rate", transitions > 0 ? switches / transitions : 0.0},
            {"kl", kl / std::max(tokens, 1.0)},
            {"retention", teacher_correct > 0 ? student_correct / teacher_correct : 0.0},
            {"mean_option_duration", options > 0 ? tokens * static_cast<double>(layers) / options : 0.0},
            {"utilization_entropy", entropy},
            {"distinct_masks_rank0", distinct_masks / static_cast<double>(layers)},
            {"remote_ranks_per_mask", masked_positions > 0 ? remote_ranks / masked_positions : 0.0},
            {"student_accuracy", student_correct / std::max(tokens, 1.0)},
            {"teacher_accuracy", teacher_correct / std::max(tokens, 1.0)}};
  }
};

}  // namespace

int run_eval(const Arguments& arguments) {
  po::options_description options("temoe eval");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("run-dir", po::value<std::string>(), "a training run whose controller.h5 is evaluated (without: baselines only)")
      ("json", po::value<std::string>(), "write the figures to this JSON file");
  const auto parsed = parse_command_line("eval", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe eval --config FILE [--run-dir DIR] --json FILE", options);
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
                                      values["parallel.placement"].as<std::string>());
  set_dispatch_mode(*model, values["parallel.dispatch"].as<std::string>());
  const ModelConfig& model_config = model->config;
  const data::TokenDataset dataset = read_training_data(values, true, "eval");
  // A different order than training's (the held-out file is the usual protection; this is the second).
  data::BatchSampler sampler(dataset, {time, config.seed + 0x9E3779B9ull, true});
  const auto slice = data::data_parallel_slice(global_batch, world.rank(), world.size());

  ParameterSet parameters;
  auto controllers = make_controllers(parameters, model_config, model->weights, config.controller, config.seed);
  const bool trained = !run_directory.empty();
  if (trained) load_controller(controller_file(run_directory), parameters);

  const int64_t layers = model_config.num_layers, experts = model_config.num_experts, k_hat = config.controller.k_hat;
  const auto fresh_score = [&] {
    PolicyScore score;
    score.expert_uses.assign(static_cast<size_t>(layers * experts), 0.0);
    return score;
  };
  // Scores `policy` (nullptr: the teacher) over every evaluation batch.
  const auto score_policy = [&](MaskPolicy* policy) {
    PolicyScore score = fresh_score();
    for (int64_t index = 0; index < batches; ++index) {
      const data::SequenceBatch batch = sampler.batch(index, global_batch, slice.first, slice.count);
      const Rollout teacher = run_rollout(*model->transformer, batch.tokens, batch.batch, batch.time, nullptr, batch.global_index, index);
      const Rollout student = policy ? run_rollout(*model->transformer, batch.tokens, batch.batch, batch.time, policy,
                                                   batch.global_index, index)
                                     : teacher;
      const TokenScores scores = score_tokens(teacher.logits, student.logits, batch.targets, config.reward);
      for (size_t i = 0; i < scores.kl.size(); ++i) {
        score.tokens += 1;
        score.kl += scores.kl[i];
        score.student_correct += scores.student_correct[i];
        score.teacher_correct += scores.teacher_correct[i];
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
      const data::SequenceBatch batch = sampler.batch(index, global_batch, slice.first, slice.count);
      const Rollout teacher = run_rollout(*model->transformer, batch.tokens, batch.batch, batch.time, nullptr, batch.global_index, index);
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
  const double controller_rate = controller.transitions > 0 ? controller.switches / controller.transitions : 0.0;
  RandomSwitchPolicy random(k_hat, controller_rate, config.seed + 17);
  const PolicyScore fixed_score = score_policy(&fixed);
  const PolicyScore random_score = score_policy(&random);
  const PolicyScore cache_score = score_policy(&cache);

  if (world.rank() == 0) {
    nlohmann::json report = controller.to_json(layers, experts);
    report["trained"] = trained;
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
    std::printf("temoe eval: %s, k_hat %lld, %.0f held-out tokens\n", trained ? run_directory.c_str() : "(untrained controller)",
                static_cast<long long>(k_hat), controller.tokens);
    std::printf("  %-14s %12s %10s %10s %10s %10s\n", "policy", "switch rate", "KL", "retention", "duration", "entropy");
    const auto row = [](const char* name, const nlohmann::json& j) {
      std::printf("  %-14s %11.2f%% %10.4f %9.1f%% %10.2f %10.3f\n", name, 100.0 * j["switch_rate"].get<double>(),
                  j["kl"].get<double>(), 100.0 * j["retention"].get<double>(), j["mean_option_duration"].get<double>(),
                  j["utilization_entropy"].get<double>());
    };
    row("controller", report);
    row("top-k", report["baselines"]["topk"]);
    row("fixed", report["baselines"]["fixed"]);
    row("random", report["baselines"]["random"]);
    row("greedy cache", report["baselines"]["greedy_cache"]);
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
