// temoe bench train: tokens/s of one controller training step (teacher forward, student rollout
// with the controllers, rewards, learner, all-reduce, AdamW; teacher-forced, or sampled with
// --rollout.mode=sampled) beside tokens/s of one plain teacher forward on the same batch, measured
// in the same run. Target: a teacher-forced step costs at most 2.5x the forward.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "launch/benchmarks.hpp"
#include "launch/command_line.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/random_tokens.hpp"
#include "launch/training_setup.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

namespace {

// Random sequences with their next tokens, as the sampler would hand them out (no document ends).
data::SequenceBatch random_batch(int64_t batch, int64_t time, int64_t vocabulary, uint64_t seed, int64_t first_index) {
  const TokenArray stream = random_tokens(batch, time + 1, vocabulary, seed);
  data::SequenceBatch sequences;
  sequences.batch = batch;
  sequences.time = time;
  for (int64_t b = 0; b < batch; ++b) {
    const auto row = stream.ids.begin() + b * (time + 1);
    sequences.tokens.insert(sequences.tokens.end(), row, row + time);
    sequences.targets.insert(sequences.targets.end(), row + 1, row + time + 1);
    sequences.global_index.push_back(first_index + b);
  }
  sequences.document_ends.assign(static_cast<size_t>(batch * time), 0);
  sequences.truncated.assign(static_cast<size_t>(batch * time), 0);
  for (int64_t b = 0; b < batch; ++b) sequences.truncated[static_cast<size_t>(b * time + time - 1)] = 1;
  return sequences;
}

}  // namespace

int bench_train(const Arguments& arguments) {
  po::options_description options("temoe bench train");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("repeats", po::value<int>()->default_value(3), "timed steps and forwards (after one warm-up each)")
      ("json", po::value<std::string>(), "also write the figures to this JSON file (rank 0)");
  const auto parsed = parse_command_line("bench train", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe bench train --model DIR [--train.batch_size=B] "
                              "[--train.sequence_length=T] [--rollout.mode=teacher_forced|sampled] [--json FILE]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  apply_thread_settings(values);
  TrainerConfig config = trainer_config_from(values);
  const int64_t global_batch = values["train.batch_size"].as<int64_t>(), time = values["train.sequence_length"].as<int64_t>();
  const int repeats = values["repeats"].as<int>();
  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  if (global_batch % world.size() != 0) TEMOE_FAIL("train.batch_size must be a multiple of the " << world.size() << " ranks");
  auto model = load_distributed_model(model_directory_from(values, "bench train"),
                                      parse_device(values["runtime.device"].as<std::string>()), world,
                                      values["parallel.ep_size"].as<int>(),
                                      values["parallel.placement"].as<std::string>());
  const int64_t local = global_batch / world.size();
  const data::SequenceBatch batch =
      random_batch(local, time, model->config.vocab_size, 11 + static_cast<uint64_t>(world.rank()), world.rank() * local);
  if (model->dispatcher) {  // the communication cost is priced on this run's expert placement
    config.expert_owners = model->dispatcher->placement().owners();
    config.home_rank = model->grid->ep_rank();
  }
  ControllerTrainer trainer(*model->transformer, config, world);
  if (model->device_world) trainer.reduce_gradients_on(*model->device_world, model->backend->device());

  using Clock = std::chrono::steady_clock;
  const auto time_it = [&](auto&& work) {
    work(0);  // warm-up
    world.barrier();
    const auto start = Clock::now();
    for (int r = 1; r <= repeats; ++r) work(r);
    world.barrier();
    return std::chrono::duration<double>(Clock::now() - start).count() / repeats;
  };
  const double forward_seconds = time_it([&](int) { model->transformer->forward(batch.tokens, batch.batch, batch.time); });
  const double step_seconds = time_it([&](int r) { trainer.step(batch, r); });
  const double tokens = static_cast<double>(global_batch * time);
  if (world.rank() == 0) {
    std::printf("bench train: %s, %d ranks, %lld x %lld tokens per step, k_hat %lld\n",
                to_string(model->config.architecture).c_str(), world.size(), static_cast<long long>(global_batch),
                static_cast<long long>(time), static_cast<long long>(config.controller.k_hat));
    std::printf("  training step    %10.1f tokens/s   (rollout %s)\n", tokens / step_seconds,
                values["rollout.mode"].as<std::string>().c_str());
    std::printf("  teacher forward  %10.1f tokens/s   (a step costs %.2fx a forward; target <= 2.5x)\n",
                tokens / forward_seconds, step_seconds / forward_seconds);
    if (values.count("json")) {
      write_json_report(values["json"].as<std::string>(), {{"train_tokens_per_s", tokens / step_seconds},
                                                           {"forward_tokens_per_s", tokens / forward_seconds},
                                                           {"step_over_forward", step_seconds / forward_seconds},
                                                           {"world_size", world.size()},
                                                           {"tokens_per_step", global_batch * time}});
    }
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
