// temoe bench train-step: tokens/s of one pretraining step of the MoE transformer (forward,
// cross-entropy and load balancing, backward, gradient all-reduce, clipping, AdamW) beside the
// PyTorch reference doing forward, cross-entropy, backward, clipping and AdamW on the same model,
// tokens and thread count, in the same run. Target: at least 1.2x PyTorch's eager step.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "launch/benchmarks.hpp"
#include "launch/command_line.hpp"
#include "launch/json_report.hpp"
#include "launch/reference_benchmark.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/data/topic_language.hpp"
#include "src/io/npy_file.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/training/pretraining.hpp"
#include "src/training/training_model.hpp"

namespace temoe::launch {


int bench_train_step(const Arguments& arguments) {
  po::options_description options("temoe bench train-step");
  options.add_options()
      ("model", po::value<std::string>(), "model directory whose architecture and weights start the steps")
      ("batch", po::value<int64_t>()->default_value(4), "sequences per step")
      ("time", po::value<int64_t>()->default_value(256), "tokens per sequence")
      ("repeats", po::value<int>()->default_value(3), "timed steps (after one warm-up)")
      ("python", po::value<std::string>()->default_value("/usr/bin/python3"), "interpreter with torch for the reference")
      ("no-torch", "skip the PyTorch reference")
      ("json", po::value<std::string>(), "also write the figures to this JSON file");
  const auto parsed = parse_command_line("bench train-step", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe bench train-step --model DIR [--batch B --time T] [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("model")) TEMOE_FAIL("temoe bench train-step: --model DIR is required");
  apply_thread_settings(values);
  const std::string model_dir = values["model"].as<std::string>();
  const int64_t batch = values["batch"].as<int64_t>(), time = values["time"].as<int64_t>();
  const int repeats = values["repeats"].as<int>();
  if (batch < 1 || time < 2 || repeats < 1) TEMOE_FAIL("temoe bench train-step: --batch, --time and --repeats must be positive");

  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;
  const ModelConfig config = ModelConfig::from_file(std::filesystem::path(model_dir) / "config.json");
  ProcessGrid grid(world, values["parallel.ep_size"].as<int>(), config.num_experts);
  const SafetensorsCheckpoint checkpoint(model_dir);
  const int64_t per_rank = grid.experts_per_rank();
  auto model = make_training_model(config, load_model_weights(checkpoint, config, {grid.ep_rank() * per_rank, per_rank}),
                                   Device::cpu, &grid);
  // Token data of the topic language sized to the model's vocabulary: enough documents for every step.
  data::TopicLanguageOptions language;
  language.vocab_size = config.vocab_size;
  language.documents = batch * (repeats + 2);
  language.document_length = time + 1;
  const data::TokenDataset dataset = data::TopicLanguage(language).generate();
  PretrainingOptions pretraining;
  pretraining.steps = repeats + 1;
  pretraining.warmup_steps = 0;
  pretraining.batch_size = batch;
  pretraining.sequence_length = time;
  Pretrainer trainer(*model, training_communicators(grid), dataset, pretraining);
  trainer.step();  // warm-up
  double seconds = 0;
  for (int r = 0; r < repeats; ++r) seconds += trainer.step().seconds;
  double slowest = seconds / repeats;
  std::vector<double> times(static_cast<size_t>(world.size()));
  {
    const auto gathered = world.gather_v(std::as_bytes(std::span<const double>(&slowest, 1)), 0);
    if (world.rank() == 0) {
      std::memcpy(times.data(), gathered.data(), gathered.size());
      for (double t : times) slowest = std::max(slowest, t);
    }
  }
  if (world.rank() == 0) {
    const double tokens_per_s = static_cast<double>(batch * time) / slowest;
    double torch_rate = 0;
    if (!values.count("no-torch")) {
      TokenArray tokens{{batch, time + 1}, {}};
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t begin = dataset.document_begin(b);
        tokens.ids.insert(tokens.ids.end(), dataset.tokens.begin() + begin, dataset.tokens.begin() + begin + time + 1);
      }
      const auto token_file = std::filesystem::temp_directory_path() / ("temoe-train-step-" + std::to_string(::getpid()) + ".npy");
      write_token_npy(token_file, tokens);
      torch_rate = run_reference_benchmark("bench_train_step.py",
                                           "--model " + model_dir + " --tokens " + token_file.string() + " --threads " +
                                               std::to_string(omp_get_max_threads()) + " --repeats " + std::to_string(repeats),
                                           values["python"].as<std::string>());
      std::filesystem::remove(token_file);
    }
    std::printf("bench train-step: %s, %d ranks, %lld x %lld tokens, %d threads per rank\n",
                to_string(config.architecture).c_str(), world.size(), static_cast<long long>(batch),
                static_cast<long long>(time), omp_get_max_threads());
    std::printf("  temoe           %10.1f tokens/s\n", tokens_per_s);
    if (torch_rate > 0) std::printf("  PyTorch eager   %10.1f tokens/s  (temoe is %.2fx; target >= 1.2x)\n", torch_rate, tokens_per_s / torch_rate);
    if (values.count("json")) {
      write_json_report(values["json"].as<std::string>(), {{"tokens_per_s", tokens_per_s},
                                                           {"torch_tokens_per_s", torch_rate},
                                                           {"speedup_over_torch", torch_rate > 0 ? tokens_per_s / torch_rate : 0.0},
                                                           {"threads", omp_get_max_threads()},
                                                           {"world_size", world.size()}});
    }
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
