// temoe: trains temporally extended MoE controllers on a frozen expert-parallel MoE transformer.
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>

#include "launch/commands.hpp"
#include "launch/process_environment.hpp"

namespace {

struct Command {
  int (*run)(const temoe::launch::Arguments&);
  const char* summary;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table = {
      {"forward", {temoe::launch::run_forward, "logits of a model for a batch of token sequences (.npy in, .npy out)"}},
      {"init-model", {temoe::launch::run_init_model, "write a random model in the Hugging Face safetensors layout"}},
      {"init-adapters", {temoe::launch::run_init_adapters, "write new LoRA adapters for a model in Hugging Face PEFT's layout"}},
      {"inspect", {temoe::launch::run_inspect, "architecture, parameter counts and bytes per rank of a model"}},
      {"train", {temoe::launch::run_train, "train the option controllers (teacher-forced, data-parallel under mpirun)"}},
      {"eval", {temoe::launch::run_eval, "a trained controller against top-k, fixed, random and greedy-cache baselines"}},
      {"bench", {temoe::launch::run_bench, "benchmarks: 'bench forward' against BLAS and the PyTorch reference"}},
      // Hidden (no summary): commits checkpoints in a loop for the kill -9 test.
      {"checkpoint-stress", {temoe::launch::run_checkpoint_stress, nullptr}},
      {"make-data", {temoe::launch::run_make_data, "write the synthetic topic-language training data (HDF5)"}},
      {"make-corpus", {temoe::launch::run_make_corpus, "write a byte-level corpus of text files of several kinds (HDF5)"}},
      {"place", {temoe::launch::run_place, "an expert placement from co-selection on calibration data (for parallel.placement)"}},
      {"pretrain", {temoe::launch::run_pretrain, "pretrain the MoE transformer on token data (expert-parallel under mpirun)"}},
  };
  return table;
}

void print_usage(std::FILE* stream) {
  std::fprintf(stream,
               "temoe: temporally extended Mixture-of-Experts controllers on a frozen expert-parallel MoE model\n\n"
               "usage: temoe <command> [--config FILE] [--<section>.<key>=VALUE ...] [options]\n\ncommands:\n");
  for (const auto& [name, command] : commands()) {
    if (command.summary != nullptr) std::fprintf(stream, "  %-12s %s\n", name.c_str(), command.summary);
  }
  std::fprintf(stream, "\n'temoe <command> --help' describes a command's options and the configuration keys.\n");
}

}  // namespace

int main(int argc, char** argv) {
  const auto environment = temoe::launch::ProcessEnvironment::from_environment();
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const auto found = commands().find(name);
  if (found == commands().end()) {
    std::fprintf(stderr, "temoe: unknown command '%s'\n\n", name.c_str());
    print_usage(stderr);
    return 2;
  }
  const temoe::launch::Arguments arguments(argv + 2, argv + argc);
  try {
    return found->second.run(arguments);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "temoe %s: error on rank %d: %s\n", name.c_str(), environment.world_rank, error.what());
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    int size = 1;
    if (initialized && !finalized) MPI_Comm_size(MPI_COMM_WORLD, &size);
    // Other ranks may be waiting in a collective for this one: end the whole job rather than hang.
    if (initialized && !finalized && size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
