#pragma once
// What a resume may change. A resumed run must continue the run that wrote the checkpoint: keys
// that change its trajectory (what is learned, from which data, with which randomness, on which
// frozen weights) are refused unless the user says so with --allow-config-change; keys that only
// change how long, how often or where it runs (train.steps, log and checkpoint intervals, the
// watchdog, parallel layout, threads, evaluation) may change freely.
#include <map>
#include <string>
#include <vector>

namespace temoe::launch {

struct ConfigChange {
  std::string key;  // "section.key"
  std::string before, after;  // "(absent)" when a side lacks the key
};

// "section.key" -> value, from a resolved configuration text ("[section]" headers, "key = value").
std::map<std::string, std::string> parse_resolved_configuration(const std::string& text);

// Whether a change of `key` alters the trajectory of the run.
bool changes_the_trajectory(const std::string& key);

// The keys whose values differ between two resolved configurations, in key order; `trajectory`
// selects only the keys that change the trajectory, or only the others.
std::vector<ConfigChange> configuration_changes(const std::string& before, const std::string& after, bool trajectory);

}  // namespace temoe::launch
