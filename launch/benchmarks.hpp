#pragma once
// The benchmarks behind `temoe bench <name>`; each prints its figures beside a baseline measured
// in the same run and writes them with --json FILE.
#include "launch/commands.hpp"

namespace temoe::launch {

int bench_forward(const Arguments& arguments);
int bench_dispatch(const Arguments& arguments);
int bench_checkpoint(const Arguments& arguments);
int bench_train(const Arguments& arguments);
int bench_train_step(const Arguments& arguments);

}  // namespace temoe::launch
