// temoe pretrain: trains the MoE transformer itself on token data (the embedded testbed's model),
// data-parallel over sequences and expert-parallel over the expert groups under mpirun, and
// writes it in the Hugging Face safetensors layout so that forward / train / eval load it like any
// real model.
#include <chrono>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/json_report.hpp"
#include "launch/pretrain_keys.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/core/error.hpp"
#include "src/data/token_dataset.hpp"
#include "src/model/model_initialization.hpp"
#include "src/model/model_presets.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/training/pretraining.hpp"
#include "src/io/atomic_file.hpp"
#include "src/io/run_directory_lock.hpp"

namespace temoe::launch {

namespace {

namespace fs = std::filesystem;

// The architecture: an existing model's config.json, or a preset with overrides, sized to the data.
ModelConfig pretraining_config(const po::variables_map& values, const data::TokenDataset& dataset) {
  const std::string init_model = values["pretrain.init_model"].as<std::string>();
  if (!init_model.empty()) return ModelConfig::from_file(fs::path(init_model) / "config.json");
  ModelConfig config =
      model_preset(parse_architecture(values["pretrain.arch"].as<std::string>()), values["pretrain.preset"].as<std::string>());
  config.vocab_size = dataset.vocab_size;
  const auto override_with = [&](const char* key, int64_t& field) {
    const int64_t value = values[key].as<int64_t>();
    if (value < 0) TEMOE_FAIL(key << " = " << value << ": expected 0 (the preset's) or a positive size");
    if (value > 0) field = value;
  };
  override_with("pretrain.num_experts", config.num_experts);
  override_with("pretrain.top_k", config.top_k);
  override_with("pretrain.num_layers", config.num_layers);
  override_with("pretrain.hidden_size", config.hidden_size);
  override_with("pretrain.expert_ffn_size", config.expert_ffn_size);
  config.tie_word_embeddings = values["pretrain.tie_embeddings"].as<bool>();
  config.validate("the pretrain.* model keys");
  return config;
}

// On resume: metrics.jsonl keeps the lines of the steps the checkpoint includes, so that the
// file stays one line per step of one timeline.
void keep_metrics_until(const fs::path& path, int64_t step) {
  std::vector<std::string> kept;
  {
    std::ifstream stream(path);
    std::string line;
    while (std::getline(stream, line)) {
      if (line.empty()) continue;
      const auto json = nlohmann::json::parse(line, nullptr, false);
      if (!json.is_discarded() && json.contains("step") && json["step"].get<int64_t>() <= step) kept.push_back(line);
    }
  }
  // Replaced atomically: a full disk or a crash here leaves the old lines, never half of them.
  if (!fs::exists(path)) return;
  write_file_atomically(path, [&](std::ostream& stream) {
    for (const auto& line : kept) stream << line << "\n";
  });
}

nlohmann::json pretraining_settings(const PretrainingOptions& options) {
  return {{"steps", options.steps},
          {"batch_size", options.batch_size},
          {"sequence_length", options.sequence_length},
          {"learning_rate", options.learning_rate},
          {"min_learning_rate", options.min_learning_rate},
          {"warmup_steps", options.warmup_steps},
          {"weight_decay", options.weight_decay},
          {"beta1", options.beta1},
          {"beta2", options.beta2},
          {"grad_clip", options.gradient_clip},
          {"load_balancing", options.load_balancing},
          {"routing_locality", options.routing_locality},
          {"locality_window", options.locality_window},
          {"seed", options.seed}};
}

std::string duration_text(double seconds) {
  const auto total = static_cast<long long>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  return text;
}

}  // namespace

int run_pretrain(const Arguments& arguments) {
  po::options_description options("temoe pretrain");
  options.add_options()
      ("data", po::value<std::string>(), "training tokens, an HDF5 token dataset (temoe make-data); default: data.path")
      ("out", po::value<std::string>(), "output model directory (config.json + model.safetensors)")
      ("run-dir", po::value<std::string>(),
       "checkpoints, metrics.jsonl and summary.json (default: MODEL_DIR/run); a run directory with a checkpoint is resumed")
      ("stop-after", po::value<int64_t>(),
       "stop after this many steps of this invocation, with a checkpoint (to split a run over jobs)");
  const auto parsed = parse_command_line("pretrain", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe pretrain --data FILE.h5 --out MODEL_DIR [--run-dir DIR] "
                              "[--config FILE] [--pretrain.steps=N ...]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  const std::string data_path = values.count("data") ? values["data"].as<std::string>()
                                : values.count("data.path") ? values["data.path"].as<std::string>() : "";
  if (data_path.empty()) TEMOE_FAIL("temoe pretrain: no training data given (--data FILE.h5 or data.path in the config)");
  if (!values.count("out")) TEMOE_FAIL("temoe pretrain: --out MODEL_DIR is required");
  const fs::path out = values["out"].as<std::string>();
  const fs::path run_directory = values.count("run-dir") ? fs::path(values["run-dir"].as<std::string>()) : out / "run";
  const int64_t checkpoint_interval = values["pretrain.checkpoint_interval"].as<int64_t>();
  if (checkpoint_interval < 0) TEMOE_FAIL("pretrain.checkpoint_interval = " << checkpoint_interval << ": expected 0 or more");
  const int keep_checkpoints = values["pretrain.keep_checkpoints"].as<int>();
  if (keep_checkpoints < 0) TEMOE_FAIL("pretrain.keep_checkpoints = " << keep_checkpoints << ": expected 0 (all) or more");
  const int64_t stop_after = values.count("stop-after") ? values["stop-after"].as<int64_t>() : -1;
  if (values.count("stop-after") && stop_after < 1) TEMOE_FAIL("--stop-after " << stop_after << ": expected at least 1");
  const PretrainingOptions training = pretraining_options(values);
  const int64_t log_interval = values["pretrain.log_interval"].as<int64_t>();
  if (log_interval < 1) TEMOE_FAIL("pretrain.log_interval = " << log_interval << ": expected at least 1");
  const double init_std = values["pretrain.init_std"].as<double>();
  apply_thread_settings(values);
#if defined(__GLIBC__)
  // A training step allocates and frees the same activation and gradient tensors every step.
  // glibc hands large blocks back to the kernel (mmap / trim), so each step paid a page fault per
  // 4 KiB touched again: measured 25% of a tiny model's step. Keep freed memory for reuse instead.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif

  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  training.validate(world.size());
  // One writer per run directory, taken before anything in it is read or deleted (run_directory_lock.hpp).
  std::optional<RunDirectoryLock> lock;
  if (world.rank() == 0) lock.emplace(run_directory, std::cout);
  world.barrier();

  const data::TokenDataset dataset = data::read_token_dataset(data_path);
  const ModelConfig config = pretraining_config(values, dataset);
  ProcessGrid grid(world, values["parallel.ep_size"].as<int>(), config.num_experts);
  const ExpertSet range{grid.ep_rank() * grid.experts_per_rank(), grid.experts_per_rank()};
  const std::string init_model = values["pretrain.init_model"].as<std::string>();
  ModelWeights weights = init_model.empty()
                             ? initialize_model_weights(config, range, {.seed = training.seed, .standard_deviation = init_std})
                             : load_model_weights(SafetensorsCheckpoint(init_model), config, range);
  auto model = make_training_model(config, std::move(weights), parse_device(values["runtime.device"].as<std::string>()),
                                   &grid);
  const TrainingCommunicators communicators = training_communicators(grid);
  Pretrainer trainer(*model, communicators, dataset, training);

  const bool writer = world.rank() == 0;
  const double entropy = unigram_entropy(dataset);
  // Every rank reads the latest checkpoint (a shared file system, as for the data).
  LoadOptions load_options;
  load_options.expected_model = trainer.model_identity();
  load_options.fall_back_to_older = true;
  if (const auto loaded = load_latest_checkpoint(run_directory, load_options)) {
    trainer.restore(loaded->checkpoint);
    if (writer) {
      std::printf("temoe pretrain: resuming from %s at step %lld\n", loaded->file.c_str(),
                  static_cast<long long>(trainer.step_count()));
    }
  }
  std::unique_ptr<CheckpointDirectory> checkpoints;
  std::ofstream metrics;
  if (writer) {
    fs::create_directories(run_directory);
    checkpoints = std::make_unique<CheckpointDirectory>(run_directory, keep_checkpoints);
    keep_metrics_until(run_directory / "metrics.jsonl", trainer.step_count());
    metrics.open(run_directory / "metrics.jsonl", std::ios::app);
    if (!metrics) TEMOE_FAIL((run_directory / "metrics.jsonl").string() << ": cannot open for writing");
    std::printf("temoe pretrain: %s %lld layers, d_model %lld, %lld experts top-%lld, %lld parameters (%lld active per "
                "token); %d ranks = %d data-parallel x %d expert-parallel\n",
                to_string(config.architecture).c_str(), static_cast<long long>(config.num_layers),
                static_cast<long long>(config.hidden_size), static_cast<long long>(config.num_experts),
                static_cast<long long>(config.top_k), static_cast<long long>(config.parameters_total()),
                static_cast<long long>(config.parameters_active_per_token()), world.size(), grid.shape().dp_size,
                grid.shape().ep_size);
    std::printf("temoe pretrain: %s: %lld tokens in %lld documents, vocabulary %lld, unigram entropy %.4f nats; "
                "%lld steps of %lld x %lld tokens\n",
                data_path.c_str(), static_cast<long long>(dataset.token_count()),
                static_cast<long long>(dataset.document_count()), static_cast<long long>(dataset.vocab_size), entropy,
                static_cast<long long>(training.steps), static_cast<long long>(training.batch_size),
                static_cast<long long>(training.sequence_length));
    std::fflush(stdout);
  }

  const int64_t tokens_per_step = training.batch_size * training.sequence_length;
  const auto start = std::chrono::steady_clock::now();
  auto interval_start = start;
  double interval_loss = 0.0, last_interval_loss = 0.0;
  int64_t interval_steps = 0;
  const nlohmann::json config_text = {{"model", config.to_json()},
                                      {"data", data_path},
                                      {"pretrain", pretraining_settings(training)},
                                      {"world_size", world.size()},
                                      {"ep_size", grid.shape().ep_size}};
  const auto save_checkpoint = [&] {
    const Checkpoint checkpoint = trainer.checkpoint(config_text.dump(2));
    if (writer) checkpoints->commit(checkpoint);
  };
  const int64_t first_step = trainer.step_count();
  if (writer && first_step >= training.steps) {
    std::printf("temoe pretrain: the run in %s has completed its %lld steps; writing its model again\n",
                run_directory.c_str(), static_cast<long long>(training.steps));
  }
  bool stopped = false;
  for (int64_t step = first_step; step < training.steps; ++step) {
    const StepReport report = trainer.step();
    interval_loss += report.losses.total;
    ++interval_steps;
    stopped = stop_after > 0 && report.step - first_step >= stop_after && report.step < training.steps;
    if ((checkpoint_interval > 0 && report.step % checkpoint_interval == 0) || report.step == training.steps || stopped) {
      save_checkpoint();
    }
    if (!writer) {
      if (stopped) break;
      continue;
    }
    nlohmann::json line = {{"step", report.step},
                           {"loss", report.losses.total},
                           {"cross_entropy", report.losses.cross_entropy},
                           {"load_balancing", report.losses.load_balancing},
                           {"routing_locality", report.losses.routing_locality},
                           {"learning_rate", report.learning_rate},
                           {"gradient_norm", report.gradient_norm},
                           {"skipped", report.skipped},
                           {"tokens", report.step * tokens_per_step},
                           {"step_seconds", report.seconds}};
    // The busiest expert's share of the routed slots, times E (1 = perfectly balanced), per layer.
    nlohmann::json load = nlohmann::json::array();
    for (int64_t layer = 0; layer < config.num_layers; ++layer) {
      double busiest = 0.0;
      for (int64_t e = 0; e < config.num_experts; ++e) {
        busiest = std::max(busiest, report.losses.expert_fractions[static_cast<size_t>(layer * config.num_experts + e)]);
      }
      load.push_back(busiest * static_cast<double>(config.num_experts));
    }
    line["max_expert_load"] = load;
    if (!report.losses.window_entropy.empty()) line["window_entropy"] = report.losses.window_entropy;
    metrics << line.dump() << "\n";
    metrics.flush();
    if (stopped) {
      std::printf("temoe pretrain: stopped after step %lld (--stop-after), checkpoint in %s\n",
                  static_cast<long long>(report.step), run_directory.c_str());
      break;
    }
    const bool last = report.step == training.steps;
    if (report.step % log_interval != 0 && !last) continue;
    const auto now = std::chrono::steady_clock::now();
    const double interval_seconds = std::chrono::duration<double>(now - interval_start).count();
    const double per_step = interval_seconds / static_cast<double>(interval_steps);
    last_interval_loss = interval_loss / static_cast<double>(interval_steps);
    char locality[64] = "";
    if (training.routing_locality > 0) {
      double window_entropy = 0.0;
      for (const double layer_entropy : report.losses.window_entropy) window_entropy += layer_entropy;
      std::snprintf(locality, sizeof(locality), ", locality %.4f (window entropy %.3f)", report.losses.routing_locality,
                    window_entropy / static_cast<double>(std::max<size_t>(report.losses.window_entropy.size(), 1)));
    }
    std::printf("step %5lld/%lld  loss %.4f (last step: ce %.4f, balance %.4f%s)  lr %.2e  |g| %.3f  %.0f tokens/s  %.0f ms/step  "
                "ETA %s%s\n",
                static_cast<long long>(report.step), static_cast<long long>(training.steps), last_interval_loss,
                report.losses.cross_entropy, report.losses.load_balancing, locality, report.learning_rate,
                report.gradient_norm,
                static_cast<double>(tokens_per_step) / per_step, 1000.0 * per_step,
                duration_text(per_step * static_cast<double>(training.steps - report.step)).c_str(),
                report.skipped ? "  (non-finite gradient: step skipped)" : "");
    std::fflush(stdout);
    interval_start = now;
    interval_loss = 0.0;
    interval_steps = 0;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stopped) {
    world.barrier();
    return 0;
  }
  const int64_t steps_run = std::max<int64_t>(training.steps - first_step, 1);

  write_trained_model(*model, communicators, out);
  if (writer) {
    write_json_report((run_directory / "summary.json").string(),
                      {{"steps", training.steps},
                       {"world_size", world.size()},
                       {"ep_size", grid.shape().ep_size},
                       {"dp_size", grid.shape().dp_size},
                       {"parameters", config.parameters_total()},
                       {"tokens_per_step", tokens_per_step},
                       {"seconds", seconds},
                       {"steps_this_run", training.steps - first_step},
                       {"seconds_per_step", seconds / static_cast<double>(steps_run)},
                       {"tokens_per_second", static_cast<double>(tokens_per_step * steps_run) / seconds},
                       {"unigram_entropy", entropy},
                       {"final_loss", first_step < training.steps ? nlohmann::json(last_interval_loss) : nlohmann::json()},
                       {"model", out.string()},
                       {"data", data_path}});
    std::printf("temoe pretrain: wrote %s (loss %.4f, mean of the last progress interval; unigram entropy %.4f) in %s\n",
                out.c_str(), last_interval_loss, entropy,
                duration_text(seconds).c_str());
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
