#include "launch/resume_check.hpp"

#include <set>
#include <sstream>

namespace temoe::launch {

std::map<std::string, std::string> parse_resolved_configuration(const std::string& text) {
  std::map<std::string, std::string> keys;
  std::istringstream stream(text);
  std::string section;
  for (std::string line; std::getline(stream, line);) {
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
      continue;
    }
    const auto equals = line.find(" = ");
    if (equals == std::string::npos) continue;
    keys[section + "." + line.substr(0, equals)] = line.substr(equals + 3);
  }
  return keys;
}

bool changes_the_trajectory(const std::string& key) {
  // Every controller and rollout key shapes what is learned and how it is explored.
  if (key.starts_with("controller.") || key.starts_with("rollout.")) return true;
  static const std::set<std::string> trajectory = {
      "train.seed",          "train.batch_size", "train.sequence_length", "train.learning_rate",
      "train.weight_decay",  "train.clip_norm",  "data.path",             "model.weights_content_hash",
  };
  return trajectory.contains(key);
}

std::vector<ConfigChange> configuration_changes(const std::string& before, const std::string& after, bool trajectory) {
  const auto old_keys = parse_resolved_configuration(before), new_keys = parse_resolved_configuration(after);
  std::set<std::string> all;
  for (const auto& [key, value] : old_keys) all.insert(key);
  for (const auto& [key, value] : new_keys) all.insert(key);
  std::vector<ConfigChange> changes;
  for (const std::string& key : all) {
    if (changes_the_trajectory(key) != trajectory) continue;
    const auto old_value = old_keys.find(key), new_value = new_keys.find(key);
    const std::string a = old_value == old_keys.end() ? "(absent)" : old_value->second;
    const std::string b = new_value == new_keys.end() ? "(absent)" : new_value->second;
    if (a != b) changes.push_back({key, a, b});
  }
  return changes;
}

}  // namespace temoe::launch
