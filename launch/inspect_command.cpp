// temoe inspect: what a model is and what each rank would hold.
#include <cstdio>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/inspect_checkpoint.hpp"
#include "launch/json_report.hpp"
#include "src/core/error.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/safetensors_checkpoint.hpp"

namespace temoe::launch {

namespace {
std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f %s", bytes, units[unit]);
  return text;
}
}  // namespace

int run_inspect(const Arguments& arguments) {
  po::options_description options("temoe inspect");
  options.add_options()
      ("path", po::value<std::string>(), "model directory, or a checkpoint file (.h5) to print and verify")
      ("ep", po::value<int>()->default_value(1), "expert-parallel size to report bytes per rank for")
      ("json", po::value<std::string>(), "also write the figures to this JSON file");
  po::positional_options_description positional;
  positional.add("path", 1);
  const auto parsed = parse_command_line("inspect", arguments, options, positional);
  if (parsed.help) {
    std::cout << command_help("temoe inspect DIR [--ep X] [--json FILE]\n       temoe inspect FILE.h5 [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("path")) TEMOE_FAIL("temoe inspect: a model directory or a checkpoint file (.h5) is required");
  if (std::filesystem::path(values["path"].as<std::string>()).extension() == ".h5") {
    return inspect_checkpoint(values["path"].as<std::string>(), values.count("json") ? values["json"].as<std::string>() : "");
  }
  const std::filesystem::path directory = values["path"].as<std::string>();
  const int ep = values["ep"].as<int>();
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  if (ep < 1 || config.num_experts % ep != 0) {
    TEMOE_FAIL("temoe inspect: --ep " << ep << " must be a positive divisor of the " << config.num_experts << " experts");
  }
  const SafetensorsCheckpoint checkpoint(directory);
  uint64_t stored_bytes = 0;
  for (const auto& name : checkpoint.tensor_names()) stored_bytes += checkpoint.entry(name).byte_count;
  const int64_t experts_per_rank = config.num_experts / ep;
  const int64_t per_rank = resident_weight_bytes(config, experts_per_rank);
  const int64_t expert_bytes_per_rank = config.num_layers * experts_per_rank * config.parameters_per_expert() * 4;

  std::cout << "model            " << directory.string() << "\n"
            << "architecture     " << to_string(config.architecture) << "\n"
            << "layers           " << config.num_layers << "\n"
            << "d_model          " << config.hidden_size << "\n"
            << "heads / kv heads " << config.num_heads << " / " << config.num_kv_heads << " (head_dim " << config.head_dim << ")\n"
            << "experts          " << config.num_experts << ", top-" << config.top_k << ", ffn " << config.expert_ffn_size
            << (config.normalize_top_k ? ", renormalised top-k" : ", top-k not renormalised") << "\n"
            << "vocabulary       " << config.vocab_size << (config.tie_word_embeddings ? " (tied embeddings)" : "") << "\n"
            << "parameters       " << config.parameters_total() << " total, " << config.parameters_active_per_token()
            << " active per token\n"
            << "stored           " << human_bytes(static_cast<double>(stored_bytes)) << " in safetensors\n"
            << "per rank (ep " << ep << ") " << human_bytes(static_cast<double>(per_rank)) << " fp32 resident ("
            << experts_per_rank << " experts per layer: " << human_bytes(static_cast<double>(expert_bytes_per_rank))
            << ")\n";
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(),
                      {{"architecture", to_string(config.architecture)},
                       {"parameters_total", config.parameters_total()},
                       {"parameters_active_per_token", config.parameters_active_per_token()},
                       {"stored_bytes", stored_bytes},
                       {"ep", ep},
                       {"experts_per_rank", experts_per_rank},
                       {"bytes_per_rank", per_rank},
                       {"model", config.to_json()}});
  }
  return 0;
}

}  // namespace temoe::launch
