#include "src/model/lora_adapters.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/safetensors_file.hpp"
#include "src/model/safetensors_writer.hpp"

namespace temoe {

namespace {

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";
constexpr const char* kPrefix = "base_model.model.";
constexpr const char* kSuffixA = ".lora_A.weight";
constexpr const char* kSuffixB = ".lora_B.weight";

std::string module_of(const std::string& weight_name) {
  const std::string suffix = ".weight";
  return weight_name.ends_with(suffix) ? weight_name.substr(0, weight_name.size() - suffix.size()) : weight_name;
}

bool has_target(const std::vector<LoraTarget>& targets, LoraTarget target) {
  return std::find(targets.begin(), targets.end(), target) != targets.end();
}

// A stable key of a module name for its random stream (FNV-1a: the same on every machine).
uint64_t module_key(const std::string& module) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : module) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return hash;
}

// Every routed expert's module names, held here or not: a rank checks the names of the adapters
// it skips against them.
std::set<std::string> all_expert_modules(const ModelConfig& config) {
  std::set<std::string> modules;
  if (config.architecture == Architecture::gpt_oss) return modules;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    if (!config.is_moe_layer(layer)) continue;
    for (int64_t expert = 0; expert < config.num_experts; ++expert) {
      for (const ExpertTensor tensor : {ExpertTensor::gate_proj, ExpertTensor::up_proj, ExpertTensor::down_proj}) {
        modules.insert(module_of(expert_tensor_name(config, layer, expert, tensor)));
      }
    }
  }
  return modules;
}

void add_ffn_sites(std::vector<LoraSite>& sites, const std::string& gate, const std::string& up, const std::string& down,
                   ExpertWeights& ffn) {
  sites.push_back({module_of(gate), LoraTarget::experts, &ffn.gate_proj, &ffn.gate_lora});
  sites.push_back({module_of(up), LoraTarget::experts, &ffn.up_proj, &ffn.up_lora});
  sites.push_back({module_of(down), LoraTarget::experts, &ffn.down_proj, &ffn.down_lora});
}

void refuse_fused_experts(const ModelConfig& config, const std::vector<LoraTarget>& targets, const std::string& where) {
  TEMOE_CHECK(config.architecture != Architecture::gpt_oss || !has_target(targets, LoraTarget::experts),
              where << ": expert adapters on gpt-oss: its experts are fused [E, ...] tensors with no per-expert modules "
                       "for PEFT to name; use lora.targets = attention and/or router");
}

Tensor scaled(const Tensor& b, double scale) {
  Tensor out = b.clone();
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = static_cast<float>(scale * out.data()[i]);
  return out;
}

std::string json_string(const nlohmann::json& value) { return value.dump(); }

}  // namespace

std::vector<LoraTarget> parse_lora_targets(const std::string& list) {
  std::vector<LoraTarget> targets;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    LoraTarget target;
    if (item == "attention") {
      target = LoraTarget::attention;
    } else if (item == "experts") {
      target = LoraTarget::experts;
    } else if (item == "router") {
      target = LoraTarget::router;
    } else {
      TEMOE_FAIL("lora.targets = " << list << ": '" << item << "' is not one of attention, experts, router");
    }
    if (!has_target(targets, target)) targets.push_back(target);
  }
  TEMOE_CHECK(!targets.empty(), "lora.targets = '" << list << "': expected a comma-separated subset of attention, experts, router");
  return targets;
}

std::string lora_targets_string(const std::vector<LoraTarget>& targets) {
  std::string out;
  for (const LoraTarget target : targets) {
    if (!out.empty()) out += ",";
    out += target == LoraTarget::attention ? "attention" : target == LoraTarget::experts ? "experts" : "router";
  }
  return out;
}

double LoraSettings::scale() const {
  return rank_stabilised ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

std::vector<LoraSite> lora_sites(const ModelConfig& config, ModelWeights& weights, const std::vector<LoraTarget>& targets) {
  std::vector<LoraSite> sites;
  const bool fused = config.architecture == Architecture::gpt_oss;
  for (int64_t layer = 0; layer < static_cast<int64_t>(weights.layers.size()); ++layer) {
    LayerWeights& w = weights.layers[static_cast<size_t>(layer)];
    const auto name = [&](LayerTensor tensor) { return module_of(layer_tensor_name(config, layer, tensor)); };
    if (has_target(targets, LoraTarget::attention)) {
      sites.push_back({name(LayerTensor::q_proj), LoraTarget::attention, &w.q_proj, &w.q_lora});
      sites.push_back({name(LayerTensor::k_proj), LoraTarget::attention, &w.k_proj, &w.k_lora});
      sites.push_back({name(LayerTensor::v_proj), LoraTarget::attention, &w.v_proj, &w.v_lora});
      sites.push_back({name(LayerTensor::o_proj), LoraTarget::attention, &w.o_proj, &w.o_lora});
    }
    const bool moe = config.is_moe_layer(layer);
    if (moe && has_target(targets, LoraTarget::router)) {
      sites.push_back({name(LayerTensor::router), LoraTarget::router, &w.router, &w.router_lora});
    }
    if (!has_target(targets, LoraTarget::experts) || fused) continue;
    if (!moe) {
      add_ffn_sites(sites, layer_tensor_name(config, layer, LayerTensor::dense_gate_proj),
                    layer_tensor_name(config, layer, LayerTensor::dense_up_proj),
                    layer_tensor_name(config, layer, LayerTensor::dense_down_proj), w.dense_mlp);
      continue;
    }
    for (int64_t local = 0; local < weights.local_experts.count(); ++local) {
      const int64_t expert = weights.local_experts.id(local);
      add_ffn_sites(sites, expert_tensor_name(config, layer, expert, ExpertTensor::gate_proj),
                    expert_tensor_name(config, layer, expert, ExpertTensor::up_proj),
                    expert_tensor_name(config, layer, expert, ExpertTensor::down_proj),
                    w.experts.at(static_cast<size_t>(local)));
    }
    if (config.shared_expert_ffn_size > 0) {
      add_ffn_sites(sites, layer_tensor_name(config, layer, LayerTensor::shared_gate_proj),
                    layer_tensor_name(config, layer, LayerTensor::shared_up_proj),
                    layer_tensor_name(config, layer, LayerTensor::shared_down_proj), w.shared_expert);
    }
  }
  return sites;
}

LoraSettings load_lora_adapters(const std::filesystem::path& directory, const ModelConfig& config, ModelWeights& weights) {
  const std::filesystem::path config_path = directory / kConfigFile, weights_path = directory / kWeightsFile;
  std::ifstream config_file(config_path);
  TEMOE_CHECK(config_file, "adapters " << directory << ": cannot open " << config_path
                                       << " (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)");
  nlohmann::json json;
  try {
    config_file >> json;
  } catch (const nlohmann::json::exception& error) {
    TEMOE_FAIL(config_path << ": not valid JSON (" << error.what() << ")");
  }
  TEMOE_CHECK(json.is_object(), config_path << ": expected a JSON object, found " << json_string(json).substr(0, 80));
  const auto require = [&](bool condition, const char* key, const std::string& expected) {
    TEMOE_CHECK(condition, config_path << ": key '" << key << "' = "
                                       << (json.contains(key) ? json_string(json[key]) : std::string("(missing)")) << ", expected "
                                       << expected);
  };
  require(!json.contains("peft_type") || json["peft_type"] == "LORA", "peft_type", "\"LORA\"");
  require(json.contains("r") && json["r"].is_number_integer() && json["r"].get<int64_t>() >= 1, "r",
          "a positive integer (the adapters' rank)");
  require(json.contains("lora_alpha") && json["lora_alpha"].is_number(), "lora_alpha", "a number");
  require(!json.contains("use_rslora") || json["use_rslora"].is_boolean(), "use_rslora", "true or false");
  require(!json.contains("use_dora") || json["use_dora"] == false, "use_dora", "false (DoRA adapters are not supported)");
  require(!json.contains("fan_in_fan_out") || json["fan_in_fan_out"] == false, "fan_in_fan_out",
          "false (the weights are [out, in] Linear weights)");
  require(!json.contains("bias") || json["bias"] == "none", "bias", "\"none\" (adapter biases are not supported)");
  const auto empty = [&](const char* key) {
    return !json.contains(key) || json[key].is_null() || ((json[key].is_object() || json[key].is_array()) && json[key].empty());
  };
  require(empty("modules_to_save"), "modules_to_save", "null or empty (only LoRA adapters are read)");
  require(empty("rank_pattern"), "rank_pattern", "empty (one rank for every adapter)");
  require(empty("alpha_pattern"), "alpha_pattern", "empty (one alpha for every adapter)");
  require(empty("layers_to_transform"), "layers_to_transform", "null (adapters are named by module)");

  LoraSettings settings;
  settings.rank = json["r"].get<int64_t>();
  settings.alpha = json["lora_alpha"].get<double>();
  settings.rank_stabilised = json.value("use_rslora", false);
  const double scale = settings.scale();

  std::map<std::string, LoraSite> sites;
  for (const LoraSite& site : lora_sites(config, weights, {LoraTarget::attention, LoraTarget::experts, LoraTarget::router})) {
    sites.emplace(site.module, site);
  }
  const std::set<std::string> expert_modules = all_expert_modules(config);
  const SafetensorsFile file(weights_path);
  std::map<std::string, std::pair<bool, bool>> pairs;  // module -> (A seen, B seen)
  std::vector<LoraTarget> found;
  TEMOE_CHECK(!file.entries().empty(), weights_path << ": no tensors (expected " << kPrefix << "<module>" << kSuffixA << " / "
                                                    << kSuffixB << " pairs)");
  for (const auto& [name, entry] : file.entries()) {
    const bool is_a = name.ends_with(kSuffixA), is_b = name.ends_with(kSuffixB);
    TEMOE_CHECK(name.starts_with(kPrefix) && (is_a || is_b),
                weights_path << ": tensor '" << name << "' is not a LoRA weight; expected " << kPrefix << "<module>" << kSuffixA
                             << " or " << kSuffixB);
    const std::string module = name.substr(std::string(kPrefix).size(),
                                           name.size() - std::string(kPrefix).size() - std::string(kSuffixA).size());
    const auto site = sites.find(module);
    if (site == sites.end()) {
      if (expert_modules.count(module)) continue;  // an expert another rank holds
      TEMOE_FAIL(weights_path << ": tensor '" << name << "' adapts module '" << module << "', which this "
                              << to_string(config.architecture) << " model (" << config.num_layers << " layers, "
                              << config.num_experts << " experts) has no LoRA-able weight for"
                              << (config.architecture == Architecture::gpt_oss
                                      ? " (gpt-oss's experts are fused: only attention and router adapters)"
                                      : "")
                              << "; expected e.g. " << kPrefix << sites.begin()->first << kSuffixA);
    }
    const Tensor& weight = *site->second.weight;
    const Shape expected = is_a ? Shape{settings.rank, weight.dim(1)} : Shape{weight.dim(0), settings.rank};
    TEMOE_CHECK(entry.shape == expected, weights_path << ": tensor '" << name << "' has shape " << shape_string(entry.shape)
                                                      << ", expected " << shape_string(expected) << " (r = " << settings.rank
                                                      << " from " << kConfigFile << ", the module's weight is "
                                                      << shape_string(weight.shape()) << ")");
    Tensor values(expected);
    file.read_as_float(name, values.data());
    for (int64_t i = 0; i < values.numel(); ++i) {
      TEMOE_CHECK(std::isfinite(values.data()[i]), weights_path << ": tensor '" << name << "' holds a non-finite value at "
                                                                << "element " << i);
    }
    LoraAdapter& adapter = *site->second.adapter;
    (is_a ? adapter.a : adapter.b) = values;
    (is_a ? pairs[module].first : pairs[module].second) = true;
    if (!has_target(found, site->second.target)) found.push_back(site->second.target);
  }
  for (const auto& [module, seen] : pairs) {
    TEMOE_CHECK(seen.first && seen.second, weights_path << ": module '" << module << "' has "
                                                        << (seen.first ? kSuffixA : kSuffixB) << " but no "
                                                        << (seen.first ? kSuffixB : kSuffixA));
    LoraAdapter& adapter = *sites.at(module).adapter;
    adapter.scaled_b = scaled(adapter.b, scale);
  }
  settings.targets = found;
  return settings;
}

void initialize_lora_adapters(const ModelConfig& config, ModelWeights& weights, const LoraSettings& settings,
                              uint64_t seed, double b_deviation) {
  TEMOE_CHECK(settings.rank >= 1, "lora.rank = " << settings.rank << ": expected a positive rank");
  refuse_fused_experts(config, settings.targets, "lora.targets = " + lora_targets_string(settings.targets));
  for (const LoraSite& site : lora_sites(config, weights, settings.targets)) {
    const int64_t in = site.weight->dim(1), out = site.weight->dim(0);
    CounterRandom random(seed, {module_key(site.module)});
    Tensor a({settings.rank, in}), b = Tensor::zeros({out, settings.rank});
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    for (int64_t i = 0; i < a.numel(); ++i) a.data()[i] = static_cast<float>(bound * (2.0 * random.uniform() - 1.0));
    if (b_deviation > 0) {
      for (int64_t i = 0; i < b.numel(); ++i) b.data()[i] = static_cast<float>(b_deviation * random.normal());
    }
    site.adapter->a = a;
    site.adapter->b = b;
    site.adapter->scaled_b = scaled(b, settings.scale());
  }
}

void write_lora_adapters(const std::filesystem::path& directory, const ModelConfig& config, ModelWeights& weights,
                         const LoraSettings& settings, const std::string& base_model) {
  std::vector<NamedTensor> tensors;
  std::set<std::string> target_modules;
  for (const LoraSite& site :
       lora_sites(config, weights, {LoraTarget::attention, LoraTarget::experts, LoraTarget::router})) {
    if (!site.adapter->defined()) continue;
    tensors.push_back({kPrefix + site.module + kSuffixA, to_host(site.adapter->a)});
    tensors.push_back({kPrefix + site.module + kSuffixB, to_host(site.adapter->b)});
    target_modules.insert(site.module.substr(site.module.rfind('.') + 1));
  }
  TEMOE_CHECK(!tensors.empty(), "write adapters to " << directory << ": the model carries no adapters");
  std::filesystem::create_directories(directory);
  write_safetensors_file(directory / kWeightsFile, tensors, DType::f32);
  nlohmann::json json = {{"peft_type", "LORA"},
                         {"task_type", "CAUSAL_LM"},
                         {"base_model_name_or_path", base_model},
                         {"r", settings.rank},
                         {"lora_alpha", settings.alpha},
                         {"lora_dropout", 0.0},
                         {"use_rslora", settings.rank_stabilised},
                         {"use_dora", false},
                         {"fan_in_fan_out", false},
                         {"bias", "none"},
                         {"init_lora_weights", true},
                         {"inference_mode", true},
                         {"target_modules", std::vector<std::string>(target_modules.begin(), target_modules.end())},
                         {"modules_to_save", nullptr},
                         {"layers_to_transform", nullptr},
                         {"rank_pattern", nlohmann::json::object()},
                         {"alpha_pattern", nlohmann::json::object()}};
  write_file_atomically(directory / kConfigFile, [&](std::ostream& out) { out << json.dump(2) << "\n"; });
}

}  // namespace temoe
