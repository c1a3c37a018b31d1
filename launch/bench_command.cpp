// temoe bench: benchmarks that print figures beside a baseline measured in the same run.
#include <iostream>

#include "launch/benchmarks.hpp"
#include "launch/commands.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

int run_bench(const Arguments& arguments) {
  if (arguments.empty() || arguments[0] == "--help" || arguments[0] == "-h") {
    std::cout << "usage: temoe bench <forward|dispatch|train|checkpoint> [options]\n"
                 "  forward    tokens/s and GFLOP/s of a forward, beside BLAS sgemm at the same shapes and the PyTorch "
                 "reference\n"
                 "  dispatch   expert all-to-all traffic and time per MoE layer (run under mpirun), beside a plain "
                 "MPI_Alltoallv of the same bytes\n"
                 "  checkpoint write and read MB/s of an HDF5 checkpoint, beside plain write(2)+fsync and read(2) of "
                 "the same bytes on the same disk\n"
                 "  train      tokens/s of a controller training step beside one teacher forward on the same batch\n"
                 "  train-step tokens/s of a pretraining step beside PyTorch's eager forward+backward+AdamW\n";
    return arguments.empty() ? 2 : 0;
  }
  const Arguments rest(arguments.begin() + 1, arguments.end());
  if (arguments[0] == "forward") return bench_forward(rest);
  if (arguments[0] == "dispatch") return bench_dispatch(rest);
  if (arguments[0] == "checkpoint") return bench_checkpoint(rest);
  if (arguments[0] == "train") return bench_train(rest);
  if (arguments[0] == "train-step") return bench_train_step(rest);
  TEMOE_FAIL("temoe bench: unknown benchmark '" << arguments[0] << "' (expected: forward, dispatch, train, train-step or checkpoint)");
}

}  // namespace temoe::launch
