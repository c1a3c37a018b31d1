#include "launch/placement_file.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"

namespace temoe::launch {

ExpertPlacement read_placement_file(const std::filesystem::path& path, int64_t num_experts, int ep_size) {
  std::ifstream stream(path);
  if (!stream) TEMOE_FAIL("placement file " << path << ": cannot open it (config key parallel.placement)");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(stream);
  } catch (const nlohmann::json::exception& error) {
    TEMOE_FAIL("placement file " << path << ": not JSON (" << error.what() << ")");
  }
  if (!json.is_object() || !json.contains("ep_size") || !json["ep_size"].is_number_integer() || !json.contains("owners") ||
      !json["owners"].is_array()) {
    TEMOE_FAIL("placement file " << path << ": expected {\"ep_size\": X, \"owners\": [rank of each expert]}");
  }
  const int file_ep_size = json["ep_size"].get<int>();
  if (file_ep_size != ep_size) {
    TEMOE_FAIL("placement file " << path << ": key ep_size is " << file_ep_size << " but this run has " << ep_size
                                 << " expert-parallel ranks");
  }
  const auto& owners_json = json["owners"];
  if (static_cast<int64_t>(owners_json.size()) != num_experts) {
    TEMOE_FAIL("placement file " << path << ": key owners lists " << owners_json.size() << " experts, the model has "
                                 << num_experts);
  }
  std::vector<int> owners;
  for (size_t expert = 0; expert < owners_json.size(); ++expert) {
    if (!owners_json[expert].is_number_integer()) {
      TEMOE_FAIL("placement file " << path << ": owners[" << expert << "] = " << owners_json[expert].dump()
                                   << " is not a rank number");
    }
    owners.push_back(owners_json[expert].get<int>());
  }
  try {
    return ExpertPlacement::from_owners(std::move(owners), ep_size);
  } catch (const std::exception& error) {
    TEMOE_FAIL("placement file " << path << ": " << error.what());
  }
}

void write_placement_file(const std::filesystem::path& path, const ExpertPlacement& placement) {
  const nlohmann::json json = {{"ep_size", placement.ep_size()}, {"owners", placement.owners()}};
  write_file_atomically(path, [&](std::ostream& stream) { stream << json.dump() << "\n"; });
}

}  // namespace temoe::launch
