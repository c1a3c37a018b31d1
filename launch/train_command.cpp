// temoe train: option-critic controllers on the frozen model, teacher-forced, data-parallel over
// all ranks (experts spread over the expert-parallel group).
#include <filesystem>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/learner/controller_file.hpp"
#include "launch/model_session.hpp"
#include "launch/progress_log.hpp"
#include "launch/training_setup.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"

namespace temoe::launch {

namespace {

nlohmann::json metrics_json(const StepMetrics& metrics, double tokens_per_second) {
  nlohmann::json losses = nlohmann::json::array();
  for (const auto& layer : metrics.losses) {
    losses.push_back({{"value", layer.value},
                      {"q", layer.q_value},
                      {"termination", layer.termination},
                      {"selection", layer.selection},
                      {"termination_probability", layer.termination_probability}});
  }
  return {{"step", metrics.step},
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
}

}  // namespace

int run_train(const Arguments& arguments) {
  po::options_description options("temoe train");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("run-dir", po::value<std::string>(), "run directory: resolved config, metrics.jsonl, controller parameters");
  const auto parsed = parse_command_line("train", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe train --config FILE --run-dir DIR [--train.steps=N] [--train.seed=S] "
                              "[--controller.eta=E] [--controller.k_hat=K] [--rollout.mode=teacher_forced]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("run-dir")) TEMOE_FAIL("temoe train: --run-dir DIR is required");
  const std::filesystem::path run_directory = values["run-dir"].as<std::string>();
  const TrainerConfig config = trainer_config_from(values);
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
  if (global_batch % world.size() != 0) {
    TEMOE_FAIL("train.batch_size = " << global_batch << " is not a multiple of the " << world.size() << " ranks");
  }
  auto model = load_distributed_model(model_directory_from(values, "train"),
                                      parse_device(values["runtime.device"].as<std::string>()), world,
                                      values["parallel.ep_size"].as<int>());
  const data::TokenDataset dataset = read_training_data(values, false, "train");
  if (dataset.vocab_size > model->config.vocab_size) {
    TEMOE_FAIL(dataset.path.string() << ": vocabulary of " << dataset.vocab_size << " tokens exceeds the model's "
                                     << model->config.vocab_size);
  }
  data::BatchSampler sampler(dataset, {time, config.seed, true});
  ControllerTrainer trainer(*model->transformer, model->weights, config, world);

  std::unique_ptr<ProgressLog> log;
  if (world.rank() == 0) {
    std::filesystem::create_directories(run_directory);
    write_file_atomically(run_directory / "config.cfg",
                          [&](std::ostream& stream) { stream << resolved_configuration(values); });
    log = std::make_unique<ProgressLog>(run_directory / "metrics.jsonl", true, steps,
                                        values["train.log_every"].as<int64_t>());
    std::printf("temoe train: %d ranks (ep %d), %lld sequences x %lld tokens per step, k_hat %lld, eta %g, %lld "
                "controller parameters\n",
                world.size(), model->grid->shape().ep_size, static_cast<long long>(global_batch),
                static_cast<long long>(time), static_cast<long long>(config.controller.k_hat), config.controller.eta,
                static_cast<long long>(trainer.parameters().element_count()));
  }
  const auto slice = data::data_parallel_slice(global_batch, world.rank(), world.size());
  for (int64_t step = 0; step < steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const data::SequenceBatch batch = sampler.batch(step, global_batch, slice.first, slice.count);
    const StepMetrics metrics = trainer.step(batch, step);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (log) {
      log->record(step, metrics_json(metrics, static_cast<double>(metrics.tokens) / seconds), metrics.tokens,
                  metrics.switch_rate, metrics.kl);
    }
  }
  if (world.rank() == 0) save_controller(controller_file(run_directory), trainer.parameters(), resolved_configuration(values));
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
