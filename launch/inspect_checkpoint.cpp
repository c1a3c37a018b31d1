// temoe inspect FILE.h5: reads a checkpoint completely (header, whole-file hash, every dataset's
// Fletcher32 checksum, shapes and counts) and prints what it holds.
#include "launch/inspect_checkpoint.hpp"

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "launch/json_report.hpp"
#include "src/checkpoint/checkpoint_file.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"

namespace temoe::launch {

namespace {

std::string hex(uint64_t value) {
  std::ostringstream text;
  text << "0x" << std::hex << std::setw(16) << std::setfill('0') << value;
  return text.str();
}

std::string megabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f MB", bytes / 1e6);
  return text;
}

}  // namespace

int inspect_checkpoint(const std::filesystem::path& file, const std::string& json_path) {
  Checkpoint checkpoint;
  try {
    checkpoint = read_checkpoint_file(file);
  } catch (const CheckpointError& error) {
    std::cerr << "temoe inspect: REFUSED (" << to_string(error.problem()) << "): " << error.what() << "\n";
    if (!json_path.empty()) {
      write_json_report(json_path, {{"file", file.string()}, {"verified", false}, {"problem", to_string(error.problem())},
                                    {"message", error.what()}});
    }
    return 1;
  }
  int datasets = 4;  // config, metrics, ranks/random_state, ranks/data_position
  int64_t values = 0;
  const RankState& rank0 = checkpoint.ranks.front();
  std::cout << "checkpoint       " << file.string() << " (" << megabytes(static_cast<double>(std::filesystem::file_size(file)))
            << ")\n"
            << "format           temoe-checkpoint version " << checkpoint.format_version << "\n"
            << "step / tokens    " << checkpoint.step << " / " << checkpoint.tokens << "\n"
            << "model            '" << checkpoint.model.architecture << "', weights fingerprint "
            << hex(checkpoint.model.fingerprint) << "\n"
            << "world size       " << checkpoint.world_size() << " (per rank: " << rank0.random_state.size()
            << " random-state words, " << rank0.data_position.size() << " data-position values)\n";
  if (const auto& placement = checkpoint.expert_placement) {
    std::cout << "expert placement ep_size " << placement->ep_size << ", owners [";
    for (size_t expert = 0; expert < placement->owners.size(); ++expert) {
      std::cout << (expert ? ", " : "") << placement->owners[expert];
    }
    std::cout << "] (the expert-parallel rank of each expert)\n";
    ++datasets;
  }
  nlohmann::json sets = nlohmann::json::array();
  for (const auto& set : checkpoint.parameter_sets) {
    int64_t set_values = 0;
    for (const auto& tensor : set.values) set_values += tensor.numel();
    values += set_values;
    std::cout << "parameter set    " << set.name << ": " << set.values.size() << " parameters, " << set_values << " values, "
              << (set.has_optimizer ? "AdamW moments at optimizer step " + std::to_string(set.optimizer_step)
                                    : std::string("no optimizer state"))
              << "\n";
    nlohmann::json parameters = nlohmann::json::array();
    for (size_t i = 0; i < set.values.size(); ++i) {
      std::cout << "  " << std::left << std::setw(40) << set.parameter_names[i] << " " << shape_string(set.values[i].shape())
                << std::right << "\n";
      parameters.push_back({{"name", set.parameter_names[i]}, {"shape", set.values[i].shape()}});
      datasets += set.has_optimizer ? 3 : 1;
    }
    sets.push_back({{"name", set.name},
                    {"has_optimizer", set.has_optimizer},
                    {"optimizer_step", set.optimizer_step},
                    {"parameters", parameters}});
  }
  const auto config_lines = std::count(checkpoint.config.begin(), checkpoint.config.end(), '\n');
  std::cout << "config           " << checkpoint.config.size() << " bytes, " << config_lines << " lines\n"
            << "metrics          " << (checkpoint.metrics.size() > 200 ? checkpoint.metrics.substr(0, 200) + " ..." : checkpoint.metrics)
            << "\n"
            << "tensor data      " << megabytes(static_cast<double>(checkpoint_tensor_bytes(checkpoint))) << "\n"
            << "verified         header, whole-file hash and the Fletcher32 checksums of all " << datasets << " datasets\n";
  if (!json_path.empty()) {
    nlohmann::json placement = nullptr;  // the placement file's form (launch/placement_file.hpp), or null
    if (checkpoint.expert_placement) {
      placement = {{"ep_size", checkpoint.expert_placement->ep_size}, {"owners", checkpoint.expert_placement->owners}};
    }
    write_json_report(json_path, {{"file", file.string()},
                                  {"verified", true},
                                  {"format_version", checkpoint.format_version},
                                  {"step", checkpoint.step},
                                  {"tokens", checkpoint.tokens},
                                  {"model_architecture", checkpoint.model.architecture},
                                  {"model_fingerprint", hex(checkpoint.model.fingerprint)},
                                  {"world_size", checkpoint.world_size()},
                                  {"expert_placement", placement},
                                  {"parameter_sets", sets},
                                  {"datasets", datasets},
                                  {"values", values}});
  }
  return 0;
}

}  // namespace temoe::launch
