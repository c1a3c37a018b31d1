#include "launch/command_line.hpp"

#include <cblas.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/core/error.hpp"


namespace temoe::launch {

po::options_description configuration_keys() {
  po::options_description keys("Configuration keys (in --config FILE as [section] key = value, or --section.key=value)");
  keys.add_options()
      ("model.dir", po::value<std::string>(), "Hugging Face model directory (config.json + *.safetensors)")
      ("runtime.device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("runtime.threads", po::value<int>()->default_value(0), "threads per rank for kernels and BLAS (0: library default)")
      ("parallel.ep_size", po::value<int>()->default_value(0),
       "expert-parallel ranks per group (0: the largest divisor of E that divides the world size)");
  return keys;
}

ParsedCommandLine parse_command_line(const std::string& command, const std::vector<std::string>& arguments,
                                     const po::options_description& command_options,
                                     const po::positional_options_description& positional) {
  po::options_description general("General");
  general.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI configuration file");
  po::options_description all;
  all.add(general).add(command_options).add(configuration_keys());
  ParsedCommandLine parsed;
  try {
    po::store(po::command_line_parser(arguments).options(all).positional(positional).run(), parsed.values);
  } catch (const po::error& error) {
    TEMOE_FAIL("temoe " << command << ": " << error.what() << " (see 'temoe " << command << " --help')");
  }
  parsed.help = parsed.values.count("help") != 0;
  if (!parsed.help && parsed.values.count("config")) {
    const std::string path = parsed.values["config"].as<std::string>();
    std::ifstream stream(path);
    if (!stream) TEMOE_FAIL(path << ": cannot open the config file");
    po::options_description file_keys = configuration_keys();
    try {
      po::store(po::parse_config_file(stream, file_keys, /*allow_unregistered=*/false), parsed.values);
    } catch (const po::error& error) {
      TEMOE_FAIL(path << ": " << error.what() << " (the known keys are listed by 'temoe " << command << " --help')");
    }
  }
  try {
    po::notify(parsed.values);
  } catch (const po::error& error) {
    TEMOE_FAIL("temoe " << command << ": " << error.what());
  }
  return parsed;
}

std::string command_help(const std::string& usage, const po::options_description& command_options) {
  std::ostringstream stream;
  stream << "usage: " << usage << "\n\n" << command_options << "\n" << configuration_keys();
  return stream.str();
}

void apply_thread_settings(const po::variables_map& values) {
  const int threads = values["runtime.threads"].as<int>();
  if (threads < 0) TEMOE_FAIL("runtime.threads = " << threads << ": expected 0 (default) or a positive count");
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
}

}  // namespace temoe::launch
