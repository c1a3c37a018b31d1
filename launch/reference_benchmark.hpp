#pragma once
// Runs one of the PyTorch reference benchmarks in tests/reference/ (Debian's python3-torch) and
// returns the tokens/s it reports on its JSON line; 0, with the reason on stderr, when it cannot
// run, so that a benchmark still prints its own figures.
#include <string>

namespace temoe::launch {

double run_reference_benchmark(const std::string& script, const std::string& arguments, const std::string& python);

}  // namespace temoe::launch
