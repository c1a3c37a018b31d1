// temoe inspect: what a model is and what each rank would hold.
#include <cstdio>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/inspect_checkpoint.hpp"
#include "launch/json_report.hpp"
#include "src/core/error.hpp"
#include "src/model/model_weights.hpp"
#include <nlohmann/json.hpp>

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
    std::cout << command_help("temoe inspect DIR|config.json [--ep X] [--json FILE]\n       temoe inspect FILE.h5 [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("path")) TEMOE_FAIL("temoe inspect: a model directory or a checkpoint file (.h5) is required");
  if (std::filesystem::path(values["path"].as<std::string>()).extension() == ".h5") {
    return inspect_checkpoint(values["path"].as<std::string>(), values.count("json") ? values["json"].as<std::string>() : "");
  }
  // A model directory, or a config.json alone (no weights needed for the per-rank figures).
  std::filesystem::path directory = values["path"].as<std::string>();
  std::filesystem::path config_path = directory / "config.json";
  if (directory.filename() == "config.json" || std::filesystem::is_regular_file(directory)) {
    config_path = directory;
    directory = directory.parent_path();
  }
  const int ep = values["ep"].as<int>();
  const ModelConfig config = ModelConfig::from_file(config_path);
  if (ep < 1 || config.num_experts % ep != 0) {
    TEMOE_FAIL("temoe inspect: --ep " << ep << " must be a positive divisor of the " << config.num_experts << " experts");
  }
  const bool has_weights = std::filesystem::exists(directory / "model.safetensors") ||
                           std::filesystem::exists(directory / "model.safetensors.index.json");
  uint64_t stored_bytes = 0;
  if (has_weights) {
    const SafetensorsCheckpoint checkpoint(directory);
    for (const auto& name : checkpoint.tensor_names()) stored_bytes += checkpoint.entry(name).byte_count;
  }
  const int64_t experts_per_rank = config.num_experts / ep;
  const int64_t per_rank = resident_weight_bytes(config, experts_per_rank);
  const int64_t expert_bytes_per_rank = config.moe_layer_count() * experts_per_rank * config.parameters_per_expert() * 4;

  std::cout << "model            " << config_path.string() << "\n"
            << "architecture     " << to_string(config.architecture) << "\n"
            << "layers           " << config.num_layers;
  if (config.moe_layer_count() != config.num_layers) std::cout << " (" << config.moe_layer_count() << " MoE, the others dense)";
  std::cout << "\n"
            << "d_model          " << config.hidden_size << "\n"
            << "heads / kv heads " << config.num_heads << " / " << config.num_kv_heads << " (head_dim " << config.head_dim << ")\n"
            << "experts          " << config.num_experts << ", top-" << config.top_k << ", ffn " << config.expert_ffn_size;
  switch (config.gate_rule()) {
    case GateRule::all_experts_softmax: std::cout << ", top-k not renormalised"; break;
    case GateRule::renormalised_top_k: std::cout << ", renormalised top-k"; break;
    case GateRule::top_k_softmax: std::cout << ", softmax over the top-k logits"; break;
  }
  if (config.shared_expert_ffn_size > 0) std::cout << ", shared expert ffn " << config.shared_expert_ffn_size;
  std::cout << "\n";
  if (config.architecture == Architecture::gpt_oss) {
    int64_t sliding = 0;
    for (int64_t layer = 0; layer < config.num_layers; ++layer) sliding += config.is_sliding_layer(layer);
    std::cout << "attention        " << sliding << " sliding-window layers (window " << config.sliding_window << "), "
              << config.num_layers - sliding << " full, sinks" << (config.yarn ? ", YaRN rotary" : "") << "\n";
  }
  const int64_t active_without_embedding = config.parameters_active_per_token() - config.parameters_embedding();
  std::cout << "vocabulary       " << config.vocab_size << (config.tie_word_embeddings ? " (tied embeddings)" : "") << "\n"
            << "parameters       " << config.parameters_total() << " total, " << config.parameters_active_per_token()
            << " active per token (" << active_without_embedding << " without the input embedding)\n"
            << "stored           "
            << (has_weights ? human_bytes(static_cast<double>(stored_bytes)) + " in safetensors" : std::string("no weights (config.json only)"))
            << "\n"
            << "per rank (ep " << ep << ") " << human_bytes(static_cast<double>(per_rank)) << " fp32 resident ("
            << experts_per_rank << " experts per layer: " << human_bytes(static_cast<double>(expert_bytes_per_rank))
            << ")\n";
  // Every expert-parallel size up to 8 that divides E: what each rank holds.
  // For gpt-oss also what the released layout stores per rank: expert matrices in MXFP4 (17 bytes
  // per 32 values: 16 of FP4 pairs and one scale), everything else in BF16.
  const bool mxfp4_layout = config.architecture == Architecture::gpt_oss;
  const auto mxfp4_bytes = [&](int64_t local, int64_t parameters) {
    const int64_t matrix_values = config.moe_layer_count() * local * 3 * config.hidden_size * config.expert_ffn_size;
    return (parameters - matrix_values) * 2 + matrix_values / 32 * 17;
  };
  std::cout << "ep  experts/rank  parameters/rank  fp32 resident/rank" << (mxfp4_layout ? "  MXFP4+BF16 stored/rank" : "") << "\n";
  nlohmann::json per_ep = nlohmann::json::array();
  for (int size = 1; size <= 8; ++size) {
    if (config.num_experts % size != 0) continue;
    const int64_t local = config.num_experts / size;
    const int64_t bytes = resident_weight_bytes(config, local);
    const int64_t parameters = bytes / 4;
    char line[200];
    std::snprintf(line, sizeof(line), "%-3d %-13lld %-16lld %-19s %s\n", size, static_cast<long long>(local),
                  static_cast<long long>(parameters), human_bytes(static_cast<double>(bytes)).c_str(),
                  mxfp4_layout ? human_bytes(static_cast<double>(mxfp4_bytes(local, parameters))).c_str() : "");
    std::cout << line;
    per_ep.push_back({{"ep", size}, {"experts_per_rank", local}, {"parameters_per_rank", parameters}, {"bytes_per_rank", bytes}});
    if (mxfp4_layout) per_ep.back()["mxfp4_stored_bytes_per_rank"] = mxfp4_bytes(local, parameters);
  }
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(),
                      {{"architecture", to_string(config.architecture)},
                       {"parameters_total", config.parameters_total()},
                       {"parameters_active_per_token", config.parameters_active_per_token()},
                       {"stored_bytes", stored_bytes},
                       {"ep", ep},
                       {"experts_per_rank", experts_per_rank},
                       {"bytes_per_rank", per_rank},
                       {"parameters_active_without_embedding", active_without_embedding},
                       {"per_ep", per_ep},
                       {"model", config.to_json()}});
  }
  return 0;
}

}  // namespace temoe::launch
