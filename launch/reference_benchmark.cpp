#include "launch/reference_benchmark.hpp"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

namespace temoe::launch {

double run_reference_benchmark(const std::string& script, const std::string& arguments, const std::string& python) {
  const std::string command =
      python + " " + std::string(TEMOE_SOURCE_DIR) + "/tests/reference/" + script + " " + arguments;
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe != nullptr) {
    std::string output;
    char buffer[4096];
    while (std::fgets(buffer, sizeof(buffer), pipe)) output += buffer;
    const int status = ::pclose(pipe);
    try {
      if (status == 0) return nlohmann::json::parse(output.substr(output.find('{')))["tokens_per_s"].get<double>();
    } catch (const std::exception&) {
    }
  }
  std::cerr << "the PyTorch reference did not run (" << command << "); its figure is reported as 0\n";
  return 0;
}

}  // namespace temoe::launch
