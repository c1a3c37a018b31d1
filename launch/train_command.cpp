// temoe train: option-critic controllers on the frozen model, on the data's tokens (teacher-forced)
// or on the student's own continuations of them (sampled), data-parallel over all ranks (experts
// spread over the expert-parallel group).
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/learner/controller_file.hpp"
#include "launch/model_session.hpp"
#include "launch/progress_log.hpp"
#include "launch/resume_placement.hpp"
#include "launch/training_setup.hpp"
#include "launch/fault_injection.hpp"
#include "launch/model_content_hash.hpp"
#include "launch/resume_check.hpp"
#include "launch/step_watchdog.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/io/run_directory_lock.hpp"

namespace temoe::launch {

namespace {

// The exit status of a run stopped by SIGTERM or SIGUSR1 after its checkpoint (slurm/train.sbatch
// requeues the job on it). 1 is an error, 2 a usage error.
constexpr int kCheckpointAndExitCode = 3;

nlohmann::json metrics_json(const StepMetrics& metrics, double tokens_per_second) {
  nlohmann::json losses = nlohmann::json::array();
  for (const auto& layer : metrics.losses) {
    losses.push_back({{"value", layer.value},
                      {"q", layer.q_value},
                      {"termination", layer.termination},
                      {"selection", layer.selection},
                      {"termination_probability", layer.termination_probability},
                      {"termination_advantage", layer.termination_advantage}});
  }
  nlohmann::json json = {{"step", metrics.step},
                         {"tokens", metrics.tokens},
                         {"reward", metrics.reward},
                         {"kl", metrics.kl},
                         {"switch_rate", metrics.switch_rate},
                         {"teacher_switch_rate", metrics.teacher_switch_rate},
                         {"switch_rate_per_layer", metrics.switch_rate_per_layer},
                         {"mean_option_duration_per_layer", metrics.mean_option_duration_per_layer},
                         {"utilization_entropy_per_layer", metrics.utilization_entropy_per_layer},
                         {"losses_per_layer", losses},
                         {"gradient_norm", metrics.gradient_norm},
                         {"tokens_per_s", tokens_per_second}};
  // Sampled rollouts only: a teacher-forced line keeps exactly the keys it always had.
  if (metrics.importance_weight_mean) json["importance_weight_mean"] = *metrics.importance_weight_mean;
  return json;
}

// SIGTERM and SIGUSR1 only set this flag; the loop looks at it at each step boundary, where all ranks
// agree on it, write one checkpoint and exit with kCheckpointAndExitCode. The handler stays
// installed, so a second signal during the save just sets the flag again.
volatile std::sig_atomic_t stop_requested = 0;

extern "C" void request_stop(int) { stop_requested = 1; }

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal_number : {SIGTERM, SIGUSR1}) sigaction(signal_number, &action, nullptr);
}

// The frozen model a run trains on: its architecture and the names and shapes of all its weights
// (every file of the model directory, whatever share of the experts this rank loaded).
ModelIdentity model_identity(const LoadedModel& model) {
  std::vector<std::pair<std::string, Shape>> names_and_shapes;
  for (const std::string& name : model.checkpoint->tensor_names()) {
    names_and_shapes.emplace_back(name, model.checkpoint->entry(name).shape);
  }
  std::sort(names_and_shapes.begin(), names_and_shapes.end());
  return {to_string(model.config.architecture), fingerprint_weights(names_and_shapes)};
}

// Keeps the lines of metrics.jsonl with step < `first_step` (a run that died after its last
// checkpoint may have logged later steps, and a torn last line is dropped too).
void truncate_metrics(const std::filesystem::path& file, int64_t first_step) {
  if (!std::filesystem::exists(file)) return;
  std::ostringstream kept;
  {
    std::ifstream stream(file);
    for (std::string line; std::getline(stream, line);) {
      const auto json = nlohmann::json::parse(line, nullptr, false);
      if (json.is_discarded() || !json.is_object() || !json.contains("step")) continue;
      if (json["step"].get<int64_t>() < first_step) kept << line << "\n";
    }
  }
  write_file_atomically(file, [&](std::ostream& stream) { stream << kept.str(); });
}

// The resolved configuration; with the checkpoint's placement applied, parallel.placement is the
// value of the run that wrote it, as if it had been given again.
std::string resolved_configuration_with(const po::variables_map& values, const PlacementChoice& placement) {
  if (!placement.from_checkpoint) return resolved_configuration(values);
  po::variables_map effective = values;
  effective.at("parallel.placement") = po::variable_value(placement.configured_as, false);
  return resolved_configuration(effective);
}

}  // namespace

int run_train(const Arguments& arguments) {
  po::options_description options("temoe train");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("run-dir", po::value<std::string>(),
       "run directory: resolved config, metrics.jsonl, controller parameters, checkpoints (ckpt-<step>.h5 and latest)")
      ("resume", po::bool_switch(), "continue from the run directory's latest checkpoint (an error if it has none); "
                                    "without it, a run directory holding a checkpoint is resumed all the same")
      ("allow-config-change", po::bool_switch(),
       "resume even though keys that change the run's trajectory (controller.*, rollout.*, train.seed, batch_size, "
       "sequence_length, learning_rate, weight_decay, clip_norm, data.path, the model weights' content) differ from the checkpoint's");
  const auto parsed = parse_command_line("train", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe train --config FILE --run-dir DIR [--train.steps=N] [--train.seed=S] "
                              "[--controller.eta=E] [--controller.k_hat=K] [--rollout.mode=teacher_forced|sampled] [--resume] "
                              "[--train.checkpoint_every=N] [--train.keep_checkpoints=K]\n\n"
                              "SIGTERM or SIGUSR1 makes every rank stop at the next step boundary after one checkpoint, "
                              "with exit status " + std::to_string(kCheckpointAndExitCode) +
                                  "; the next temoe train on the same run directory resumes from it.",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("run-dir")) TEMOE_FAIL("temoe train: --run-dir DIR is required");
  const std::filesystem::path run_directory = values["run-dir"].as<std::string>();
  TrainerConfig config = trainer_config_from(values);
  const int64_t steps = values["train.steps"].as<int64_t>(), global_batch = values["train.batch_size"].as<int64_t>();
  const int64_t time = values["train.sequence_length"].as<int64_t>();
  if (steps < 0 || global_batch < 1 || time < 2) {
    TEMOE_FAIL("temoe train: train.steps >= 0, train.batch_size >= 1 and train.sequence_length >= 2 are required");
  }
  apply_thread_settings(values);

  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  // Before any loading: a USR1/TERM during start-up (a preemption while a large model loads) is
  // then a request to stop, answered below with the checkpoint-and-stop status, not a kill.
  install_stop_handlers();
  pause_in_start_up_if_asked(world.rank(), stop_requested);
  if (global_batch % world.size() != 0) {
    TEMOE_FAIL("train.batch_size = " << global_batch << " is not a multiple of the " << world.size() << " ranks");
  }
  // One writer per run directory: rank 0 takes the lock before any rank reads or deletes anything
  // in it, and holds it to exit (run_directory_lock.hpp). A refusal ends the job with its message.
  std::optional<RunDirectoryLock> lock;
  if (world.rank() == 0) lock.emplace(run_directory, std::cout);
  world.barrier();
  // Resume: every rank reads the latest checkpoint (it is small), before the model: the expert
  // placement it was trained with decides which experts this rank loads (resume_placement.hpp).
  std::optional<LoadedCheckpoint> loaded;
  if (std::filesystem::exists(run_directory)) loaded = load_latest_checkpoint(run_directory, LoadOptions{});
  if (!loaded && values["resume"].as<bool>()) {
    TEMOE_FAIL("temoe train --resume: " << run_directory.string() << " holds no checkpoint to resume from");
  }
  PlacementChoice placement;
  auto model = load_distributed_model(model_directory_from(values, "train"),
                                      parse_device(values["runtime.device"].as<std::string>()), world,
                                      values["parallel.ep_size"].as<int>(), [&](int64_t num_experts, int ep_size) {
                                        placement = choose_placement(values["parallel.placement"].as<std::string>(),
                                                                     loaded ? &loaded->checkpoint : nullptr,
                                                                     num_experts, ep_size);
                                        return placement.placement;
                                      });
  set_dispatch_mode(*model, values["parallel.dispatch"].as<std::string>());
  model->config.check_positions(time, "train.sequence_length = " + std::to_string(time));
  const ModelIdentity identity = model_identity(*model);
  if (loaded) check_model_identity(loaded->checkpoint, identity);
  const std::string weights_hash = hash_text(model_content_hash(model->weights, *model->grid, world));
  const data::TokenDataset dataset = read_training_data(values, false, "train");
  if (dataset.vocab_size > model->config.vocab_size) {
    TEMOE_FAIL(dataset.path.string() << ": vocabulary of " << dataset.vocab_size << " tokens exceeds the model's "
                                     << model->config.vocab_size);
  }
  data::BatchSampler sampler(dataset, {time, config.seed, true});
  if (model->dispatcher) {  // the communication cost is priced on this run's expert placement
    config.expert_owners = model->dispatcher->placement().owners();
    config.home_rank = model->grid->ep_rank();
  }
  if (const auto injection = nonfinite_injection_from_environment()) {
    config.inject_nonfinite_step = injection->step;
    config.inject_nonfinite_rank = injection->rank;
    config.inject_nonfinite_count = injection->count;
  }
  const int64_t max_nonfinite_steps = values["train.max_nonfinite_steps"].as<int64_t>();
  const int64_t watchdog_seconds = values["train.watchdog_seconds"].as<int64_t>();
  if (watchdog_seconds < 0) TEMOE_FAIL("train.watchdog_seconds = " << watchdog_seconds << ": expected 0 (off) or more");
  if (max_nonfinite_steps < 1) {
    TEMOE_FAIL("train.max_nonfinite_steps = " << max_nonfinite_steps << ": expected at least 1");
  }
  ControllerTrainer trainer(*model->transformer, config, world);
  if (model->device_world) trainer.reduce_gradients_on(*model->device_world, model->backend->device());
  const int64_t checkpoint_every = values["train.checkpoint_every"].as<int64_t>();
  const int keep_checkpoints = values["train.keep_checkpoints"].as<int>();
  if (checkpoint_every < 0 || keep_checkpoints < 0) {
    TEMOE_FAIL("temoe train: train.checkpoint_every >= 0 and train.keep_checkpoints >= 0 are required");
  }
  const std::string configuration = resolved_configuration_with(values, placement);
  std::optional<StoredPlacement> recorded_placement;  // saved with every checkpoint of an expert-parallel run
  if (model->grid->shape().ep_size > 1) recorded_placement = stored_placement(placement.placement);

  // Rank 0 alone writes the run directory; it removes an interrupted commit's temporaries first.
  std::unique_ptr<CheckpointDirectory> checkpoints;
  if (world.rank() == 0) checkpoints = std::make_unique<CheckpointDirectory>(run_directory, keep_checkpoints);
  world.barrier();

  // Resume: every rank restores the replicated controllers and their AdamW state. Randomness and
  // the data order are functions of (seed, step), so the step is all the per-rank state there is.
  int64_t first_step = 0, total_tokens = 0;
  if (loaded) {
    const Checkpoint& checkpoint = loaded->checkpoint;
    restore_parameter_set(checkpoint, "controller", trainer.parameters(), &trainer.optimizer());
    first_step = checkpoint.step;
    total_tokens = checkpoint.tokens;
    if (first_step > steps) {
      TEMOE_FAIL(loaded->file.string() << ": the checkpoint is at step " << first_step << ", past train.steps = " << steps);
    }
    // Keys that change the trajectory are refused (resume_check.hpp), the weights' content included;
    // every rank decides alike from the same files, so every rank refuses.
    std::string before = checkpoint.config, after = configuration;
    const auto stored = nlohmann::json::parse(checkpoint.metrics, nullptr, false);
    if (stored.is_object() && stored.contains("model_content_hash")) {
      before += "\n[model]\nweights_content_hash = " + stored["model_content_hash"].get<std::string>() + "\n";
      after += "\n[model]\nweights_content_hash = " + weights_hash + "\n";
    }
    const auto refused = configuration_changes(before, after, true);
    if (!refused.empty() && !values["allow-config-change"].as<bool>()) {
      std::ostringstream message;
      message << loaded->file.string() << ": resuming would change the run's trajectory:";
      for (const auto& change : refused) message << " " << change.key << " was " << change.before << ", now " << change.after << ";";
      message << " resume with the checkpoint's values, use another --run-dir, or pass --allow-config-change";
      TEMOE_FAIL(message.str());
    }
    if (world.rank() == 0) {
      for (const auto& change : refused) {
        std::printf("temoe train: note: --allow-config-change: %s was %s, now %s\n", change.key.c_str(),
                    change.before.c_str(), change.after.c_str());
      }
      // Keys that do not change the trajectory (train.steps, say) may change; say which.
      for (const auto& change : configuration_changes(before, after, false)) {
        std::printf("temoe train: note: changed since the checkpoint: %s = %s (was %s)\n", change.key.c_str(),
                    change.after.c_str(), change.before.c_str());
      }
      std::printf("temoe train: resuming from %s at step %lld (written by %d ranks, now %d)%s\n", loaded->file.c_str(),
                  static_cast<long long>(first_step), checkpoint.world_size(), world.size(),
                  placement.note.empty() ? "" : ("; " + placement.note).c_str());
    }
  }

  std::unique_ptr<ProgressLog> log;
  if (world.rank() == 0) {
    write_file_atomically(run_directory / "config.cfg", [&](std::ostream& stream) { stream << configuration; });
    if (loaded) truncate_metrics(run_directory / "metrics.jsonl", first_step);
    log = std::make_unique<ProgressLog>(run_directory / "metrics.jsonl", !loaded, steps,
                                        values["train.log_every"].as<int64_t>());
    std::printf("temoe train: %d ranks (ep %d), %lld sequences x %lld tokens per step, k_hat %lld, eta %g, %lld "
                "controller parameters\n",
                world.size(), model->grid->shape().ep_size, static_cast<long long>(global_batch),
                static_cast<long long>(time), static_cast<long long>(config.controller.k_hat), config.controller.eta,
                static_cast<long long>(trainer.parameters().element_count()));
    std::fflush(stdout);
  }

  // Rank 0 commits ckpt-<completed>.h5 (completed = optimizer updates so far = the next step index).
  int64_t saved_step = loaded ? first_step : -1;
  auto save_checkpoint = [&](int64_t completed) {
    if (completed == saved_step) return;
    saved_step = completed;
    if (world.rank() != 0) return;
    Checkpoint checkpoint;
    checkpoint.config = configuration;
    checkpoint.model = identity;
    checkpoint.step = completed;
    checkpoint.tokens = total_tokens;
    checkpoint.parameter_sets.push_back(capture_parameter_set("controller", trainer.parameters(), &trainer.optimizer()));
    checkpoint.ranks.assign(static_cast<size_t>(world.size()), RankState{{0}, {completed}});
    checkpoint.metrics = nlohmann::json{{"tokens", total_tokens}, {"model_content_hash", weights_hash}}.dump();
    checkpoint.expert_placement = recorded_placement;
    const auto file = checkpoints->commit(checkpoint);
    std::printf("temoe train: checkpoint %s\n", file.c_str());
    std::fflush(stdout);
  };

  // A signal that arrived during start-up: nothing new to save, the run resumes from where it was.
  int64_t stopped_in_start_up = stop_requested ? 1 : 0;
  world.all_reduce_max(std::span<int64_t>(&stopped_in_start_up, 1));
  if (stopped_in_start_up != 0) {
    if (world.rank() == 0) {
      std::printf("temoe train: stopped by a signal during start-up, before step %lld; nothing new to save; resume "
                  "with the same command\n",
                  static_cast<long long>(first_step));
      std::fflush(stdout);
    }
    world.barrier();
    return kCheckpointAndExitCode;
  }

  const auto slice = data::data_parallel_slice(global_batch, world.rank(), world.size());
  int64_t nonfinite_in_a_row = 0, nonfinite_steps = 0;
  const std::optional<FaultPoint> stall = stall_point_from_environment();
  StepWatchdog watchdog(std::chrono::seconds(watchdog_seconds), world.rank());
  for (int64_t step = first_step; step < steps; ++step) {
    watchdog.boundary(step);
    watchdog.phase("rollouts and learner");
    const auto start = std::chrono::steady_clock::now();
    const data::SequenceBatch batch = sampler.batch(step, global_batch, slice.first, slice.count);
    if (model->dispatcher) model->dispatcher->reset_statistics();
    if (stall && stall->rank == world.rank() && stall->layer == step) {
      watchdog.phase("injected stall (TEMOE_STALL_INJECTION)");
      stall_forever();
    }
    const StepMetrics metrics = trainer.step(batch, step);
    watchdog.phase("step figures and agreement");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total_tokens += metrics.tokens;
    // Every rank took the same decision (controller_trainer.cpp), so every rank counts alike.
    nonfinite_in_a_row = metrics.skipped_nonfinite ? nonfinite_in_a_row + 1 : 0;
    nonfinite_steps += metrics.skipped_nonfinite ? 1 : 0;
    if (metrics.skipped_nonfinite && world.rank() == 0) {
      std::printf("temoe train: warning: step %lld has a non-finite loss or gradient on some rank; its update is "
                  "skipped (%lld in a row, %lld in this run; train.max_nonfinite_steps = %lld)\n",
                  static_cast<long long>(step), static_cast<long long>(nonfinite_in_a_row),
                  static_cast<long long>(nonfinite_steps), static_cast<long long>(max_nonfinite_steps));
      std::fflush(stdout);
    }    // The expert exchange of this step (teacher and student rollouts), summed over the world.
    std::optional<nlohmann::json> dispatch;
    if (model->dispatcher) {
      const DispatchStatistics& statistics = model->dispatcher->statistics();
      double sums[4] = {static_cast<double>(statistics.remote_bytes_sent), static_cast<double>(statistics.tokens),
                        static_cast<double>(statistics.counts_negotiations), static_cast<double>(statistics.layer_calls)};
      world.all_reduce_sum(std::span<double>(sums, 4));
      dispatch = nlohmann::json{{"mode", values["parallel.dispatch"].as<std::string>()},
                                {"remote_bytes_per_token", sums[1] > 0 ? sums[0] / sums[1] : 0.0},
                                {"counts_exchange_skipped_fraction", sums[3] > 0 ? 1.0 - sums[2] / sums[3] : 0.0}};
    }
    if (log) {
      nlohmann::json line = metrics_json(metrics, static_cast<double>(metrics.tokens) / seconds);
      if (dispatch) line["dispatch"] = *dispatch;
      line["skipped_nonfinite"] = metrics.skipped_nonfinite;
      line["nonfinite_steps"] = nonfinite_steps;
      log->record(step, line, metrics.tokens, metrics.switch_rate, metrics.kl);
    }
    if (nonfinite_in_a_row >= max_nonfinite_steps) {
      // The parameters are still the last finite ones and no checkpoint holds a non-finite value.
      TEMOE_FAIL("temoe train: " << nonfinite_in_a_row << " steps in a row (up to step " << step
                                 << ") had a non-finite loss or gradient (train.max_nonfinite_steps = "
                                 << max_nonfinite_steps << "); stopping. The checkpoints in " << run_directory.string()
                                 << " hold the last finite parameters; look at the data and the learning rate");
    }
    const int64_t completed = step + 1;
    int64_t stop = stop_requested ? 1 : 0;
    world.all_reduce_max(std::span<int64_t>(&stop, 1));
    if (stop != 0 || (checkpoint_every > 0 && completed % checkpoint_every == 0) || completed == steps) {
      watchdog.phase("checkpoint commit");
      save_checkpoint(completed);
    }
    if (stop != 0 && completed < steps) {
      if (world.rank() == 0) {
        std::printf("temoe train: stopped by a signal after step %lld; resume with the same command\n",
                    static_cast<long long>(step));
        std::fflush(stdout);
      }
      world.barrier();
      return kCheckpointAndExitCode;
    }
  }
  save_checkpoint(steps);  // a resumed run with nothing left to do has it already
  if (world.rank() == 0) save_controller(controller_file(run_directory), trainer.parameters(), configuration);
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
