#include "src/model/model_config.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

namespace {

struct ArchitectureNames {
  Architecture architecture;
  const char* command_name;   // temoe init-model --arch
  const char* model_type;     // config.json
  const char* class_name;     // config.json "architectures"
};

constexpr ArchitectureNames kArchitectureNames[] = {
    {Architecture::mixtral, "mixtral", "mixtral", "MixtralForCausalLM"},
    {Architecture::olmoe, "olmoe", "olmoe", "OlmoeForCausalLM"},
    {Architecture::qwen2_moe, "qwen2-moe", "qwen2_moe", "Qwen2MoeForCausalLM"},
    {Architecture::qwen3_moe, "qwen3-moe", "qwen3_moe", "Qwen3MoeForCausalLM"},
    {Architecture::gpt_oss, "gpt-oss", "gpt_oss", "GptOssForCausalLM"},
};

const ArchitectureNames& names_of(Architecture architecture) {
  for (const auto& names : kArchitectureNames) {
    if (names.architecture == architecture) return names;
  }
  TEMOE_FAIL("architecture " << static_cast<int>(architecture) << " has no names");
}

std::string supported_list() {
  std::string list;
  for (const auto& names : kArchitectureNames) list += (list.empty() ? "" : ", ") + std::string("'") + names.command_name + "'";
  return list;
}

}  // namespace

std::string to_string(Architecture architecture) { return names_of(architecture).command_name; }
std::string model_type_of(Architecture architecture) { return names_of(architecture).model_type; }

Architecture parse_architecture(const std::string& name) {
  for (const auto& names : kArchitectureNames) {
    if (name == names.command_name || name == names.model_type) return names.architecture;
  }
  TEMOE_FAIL("unknown architecture '" << name << "': expected one of " << supported_list());
}

namespace {

class JsonFields {
 public:
  JsonFields(const nlohmann::json& json, const std::string& source) : json_(json), source_(source) {}

  int64_t positive_integer(const char* key) const {
    if (!json_.contains(key)) TEMOE_FAIL(source_ << ": missing key '" << key << "' (expected a positive integer)");
    return positive_integer_value(key);
  }
  int64_t positive_integer(const char* key, int64_t fallback) const {
    return present(key) ? positive_integer_value(key) : fallback;
  }
  double positive_number(const char* key, double fallback) const {
    if (!present(key)) return fallback;
    const auto& value = json_[key];
    if (!value.is_number() || !(value.get<double>() > 0) || !std::isfinite(value.get<double>())) {
      TEMOE_FAIL(source_ << ": key '" << key << "' is " << value.dump() << ", expected a positive finite number");
    }
    return value.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!present(key)) return fallback;
    const auto& value = json_[key];
    if (!value.is_boolean()) TEMOE_FAIL(source_ << ": key '" << key << "' is " << value.dump() << ", expected true or false");
    return value.get<bool>();
  }
  int64_t non_negative_integer(const char* key, int64_t fallback) const {
    if (!present(key)) return fallback;
    const auto& value = json_[key];
    if (!value.is_number_integer() || value.get<int64_t>() < 0) {
      TEMOE_FAIL(source_ << ": key '" << key << "' is " << value.dump() << ", expected a non-negative integer");
    }
    return value.get<int64_t>();
  }
  const nlohmann::json* optional(const char* key) const { return present(key) ? &json_[key] : nullptr; }
  // A key whose only supported value is `supported` (or absent / null when `supported` is null).
  void require_value(const char* key, const nlohmann::json& supported, const char* why) const {
    if (!json_.contains(key)) return;
    const auto& value = json_[key];
    if (value == supported || (supported.is_null() && value.is_null())) return;
    TEMOE_FAIL(source_ << ": key '" << key << "' is " << value.dump() << "; temoe supports only " << supported.dump()
                       << " (" << why << ")");
  }

 private:
  bool present(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }
  int64_t positive_integer_value(const char* key) const {
    const auto& value = json_[key];
    if (!value.is_number_integer() || value.get<int64_t>() <= 0) {
      TEMOE_FAIL(source_ << ": key '" << key << "' is " << value.dump() << ", expected a positive integer");
    }
    return value.get<int64_t>();
  }

  const nlohmann::json& json_;
  const std::string& source_;
};

Architecture architecture_of(const nlohmann::json& json, const std::string& source) {
  std::string model_type;
  if (json.contains("model_type")) {
    if (!json["model_type"].is_string()) TEMOE_FAIL(source << ": key 'model_type' is " << json["model_type"].dump() << ", expected a string");
    model_type = json["model_type"].get<std::string>();
  } else if (json.contains("architectures") && json["architectures"].is_array() && !json["architectures"].empty() &&
             json["architectures"][0].is_string()) {
    model_type = json["architectures"][0].get<std::string>();
    for (const auto& names : kArchitectureNames) {
      if (model_type == names.class_name) model_type = names.model_type;
    }
  } else {
    TEMOE_FAIL(source << ": missing key 'model_type' (expected one of " << supported_list() << ")");
  }
  for (const auto& names : kArchitectureNames) {
    if (model_type == names.model_type) return names.architecture;
  }
  std::string supported;
  for (const auto& names : kArchitectureNames) {
    supported += (supported.empty() ? "" : ", ") + std::string(names.class_name) + " (\"" + names.model_type + "\")";
  }
  TEMOE_FAIL(source << ": unknown architecture '" << model_type << "'; temoe supports " << supported);
}

// Qwen: layer l is an MoE layer unless it is in mlp_only_layers or (l + 1) is not a multiple of
// decoder_sparse_step (Qwen2MoeDecoderLayer's rule).
void read_dense_layers(const JsonFields& fields, const std::string& source, ModelConfig& config) {
  const int64_t step = fields.positive_integer("decoder_sparse_step", 1);
  std::vector<uint8_t> dense(static_cast<size_t>(config.num_layers), 0);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) dense[static_cast<size_t>(layer)] = (layer + 1) % step != 0;
  if (const nlohmann::json* only = fields.optional("mlp_only_layers")) {
    if (!only->is_array()) TEMOE_FAIL(source << ": key 'mlp_only_layers' is " << only->dump() << ", expected a list of layer indices");
    for (const auto& entry : *only) {
      if (!entry.is_number_integer() || entry.get<int64_t>() < 0 || entry.get<int64_t>() >= config.num_layers) {
        TEMOE_FAIL(source << ": key 'mlp_only_layers' holds " << entry.dump() << ", expected layer indices in [0, "
                          << config.num_layers << ")");
      }
      dense[static_cast<size_t>(entry.get<int64_t>())] = 1;
    }
  }
  if (std::find(dense.begin(), dense.end(), 1) != dense.end()) config.dense_layers = dense;
}

// gpt-oss: layer_types names each layer "sliding_attention" or "full_attention"; without it the
// layers alternate, sliding first (GptOssConfig's default).
void read_layer_types(const JsonFields& fields, const std::string& source, ModelConfig& config) {
  config.sliding_layers.assign(static_cast<size_t>(config.num_layers), 0);
  const nlohmann::json* types = fields.optional("layer_types");
  if (types == nullptr) {
    for (int64_t layer = 0; layer < config.num_layers; ++layer) config.sliding_layers[static_cast<size_t>(layer)] = layer % 2 == 0;
    return;
  }
  if (!types->is_array() || static_cast<int64_t>(types->size()) != config.num_layers) {
    TEMOE_FAIL(source << ": key 'layer_types' is " << types->dump() << ", expected a list of " << config.num_layers
                      << " entries (one per layer), each \"sliding_attention\" or \"full_attention\"");
  }
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    const auto& entry = (*types)[static_cast<size_t>(layer)];
    if (entry == "sliding_attention") {
      config.sliding_layers[static_cast<size_t>(layer)] = 1;
    } else if (entry != "full_attention") {
      TEMOE_FAIL(source << ": key 'layer_types' entry " << layer << " is " << entry.dump()
                        << "; expected \"sliding_attention\" or \"full_attention\"");
    }
  }
}

double number_in(const nlohmann::json& object, const char* key, double fallback, const std::string& source) {
  if (!object.contains(key) || object[key].is_null()) return fallback;
  if (!object[key].is_number() || !std::isfinite(object[key].get<double>()) || object[key].get<double>() <= 0) {
    TEMOE_FAIL(source << ": key 'rope_scaling." << key << "' is " << object[key].dump() << ", expected a positive number");
  }
  return object[key].get<double>();
}

// rope_scaling: null, or YaRN (the only scaling gpt-oss uses).
void read_rope_scaling(const JsonFields& fields, const std::string& source, ModelConfig& config) {
  const nlohmann::json* scaling = fields.optional("rope_scaling");
  if (scaling == nullptr) return;
  const std::string type = scaling->is_object() && scaling->contains("rope_type") && (*scaling)["rope_type"].is_string()
                               ? (*scaling)["rope_type"].get<std::string>()
                           : scaling->is_object() && scaling->contains("type") && (*scaling)["type"].is_string()
                               ? (*scaling)["type"].get<std::string>()
                               : "";
  if (type != "yarn") {
    TEMOE_FAIL(source << ": key 'rope_scaling' is " << scaling->dump()
                      << "; temoe supports null (plain rotary embeddings) or rope_type \"yarn\"");
  }
  YarnScaling& yarn = config.yarn_scaling;
  yarn.factor = number_in(*scaling, "factor", 1.0, source);
  yarn.beta_fast = number_in(*scaling, "beta_fast", 32.0, source);
  yarn.beta_slow = number_in(*scaling, "beta_slow", 1.0, source);
  yarn.original_max_position_embeddings = static_cast<int64_t>(
      number_in(*scaling, "original_max_position_embeddings", static_cast<double>(config.max_position_embeddings), source));
  if (scaling->contains("truncate") && (*scaling)["truncate"].is_boolean()) yarn.truncate = (*scaling)["truncate"].get<bool>();
  yarn.attention_factor = yarn.factor <= 1.0 ? 1.0 : 0.1 * std::log(yarn.factor) + 1.0;
  yarn.attention_factor = number_in(*scaling, "attention_factor", yarn.attention_factor, source);
  config.yarn = true;
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) TEMOE_FAIL(source << ": expected a JSON object");
  const JsonFields fields(json, source);
  ModelConfig config;
  config.architecture = architecture_of(json, source);
  const Architecture architecture = config.architecture;
  const bool mixtral = architecture == Architecture::mixtral;
  const bool qwen = architecture == Architecture::qwen2_moe || architecture == Architecture::qwen3_moe;
  const bool gpt_oss = architecture == Architecture::gpt_oss;
  config.vocab_size = fields.positive_integer("vocab_size");
  config.hidden_size = fields.positive_integer("hidden_size");
  config.num_layers = fields.positive_integer("num_hidden_layers");
  config.num_heads = fields.positive_integer("num_attention_heads");
  config.num_kv_heads = fields.positive_integer("num_key_value_heads", config.num_heads);
  config.head_dim = fields.positive_integer("head_dim", gpt_oss ? 64 : 0);
  if (config.head_dim == 0) {
    // Hugging Face's default (MixtralConfig, OlmoeConfig, Qwen2MoeConfig): hidden_size / num_attention_heads.
    if (config.hidden_size % config.num_heads != 0) {
      TEMOE_FAIL(source << ": key 'head_dim' is missing and hidden_size " << config.hidden_size
                        << " is not a multiple of num_attention_heads " << config.num_heads
                        << "; expected head_dim = hidden_size / num_attention_heads to be an integer >= 1");
    }
    config.head_dim = config.hidden_size / config.num_heads;
  }
  config.num_experts = fields.positive_integer(mixtral || gpt_oss ? "num_local_experts" : "num_experts");
  config.top_k = fields.positive_integer("num_experts_per_tok");
  config.max_position_embeddings = fields.positive_integer("max_position_embeddings", 4096);
  config.rope_theta = fields.positive_number("rope_theta", mixtral ? 1e6 : gpt_oss ? 150000.0 : 10000.0);
  config.rms_norm_eps = fields.positive_number("rms_norm_eps", 1e-5);
  config.tie_word_embeddings = fields.boolean("tie_word_embeddings", false);
  fields.require_value("hidden_act", "silu", "SwiGLU experts");
  fields.require_value("clip_qkv", nullptr, "no clipping of q, k, v");
  if (qwen) {
    config.expert_ffn_size = fields.positive_integer("moe_intermediate_size");
    config.dense_ffn_size = fields.positive_integer("intermediate_size");
    config.normalize_top_k = fields.boolean("norm_topk_prob", false);
    read_dense_layers(fields, source, config);
    fields.require_value("use_sliding_window", false, "full causal attention");
    fields.require_value("rope_scaling", nullptr, "plain rotary embeddings");
    if (architecture == Architecture::qwen2_moe) {
      // Qwen2MoeAttention's q, k, v projections carry biases (qkv_bias in newer configs).
      config.qkv_bias = fields.boolean("qkv_bias", true);
      config.shared_expert_ffn_size = fields.positive_integer("shared_expert_intermediate_size");
    } else {
      config.qk_norm = true;
      config.qk_norm_per_head = true;
      config.qkv_bias = fields.boolean("attention_bias", false);
    }
  } else if (gpt_oss) {
    config.expert_ffn_size = fields.positive_integer("intermediate_size");
    config.normalize_top_k = false;
    config.router_bias = true;
    config.expert_bias = true;
    config.attention_sinks = true;
    config.clamped_swiglu = true;
    config.swiglu_limit = fields.positive_number("swiglu_limit", 7.0);
    config.qkv_bias = config.output_bias = fields.boolean("attention_bias", true);
    config.sliding_window = fields.non_negative_integer("sliding_window", 128);
    read_layer_types(fields, source, config);
    read_rope_scaling(fields, source, config);
  } else {
    config.expert_ffn_size = fields.positive_integer("intermediate_size");
    config.normalize_top_k = mixtral ? true : fields.boolean("norm_topk_prob", false);
    config.qk_norm = !mixtral;
    // Settings that change the computation and that temoe does not implement are refused, not ignored.
    fields.require_value("sliding_window", nullptr, "full causal attention");
    fields.require_value("rope_scaling", nullptr, "plain rotary embeddings");
    fields.require_value("attention_bias", false, "projections without bias");
  }
  config.validate(source);
  return config;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& config_json) {
  std::ifstream stream(config_json);
  if (!stream) TEMOE_FAIL(config_json.string() << ": cannot open (a model directory needs config.json)");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(stream);
  } catch (const nlohmann::json::exception& error) {
    TEMOE_FAIL(config_json.string() << ": malformed JSON: " << error.what());
  }
  return from_json(json, config_json.string());
}

namespace {

// The largest value each size may take. They bound what a corrupt or hostile config.json can make
// temoe allocate or multiply, far above every published model (vocabularies of 256k, d_model 16k,
// 256 experts, 128 layers): sizes 2^24, counts 2^16; positions are int32 row indices
// (model_config.hpp).
struct SizeBound {
  const char* key;  // the config.json key
  int64_t ModelConfig::*field;
  int64_t bound;
};

std::vector<SizeBound> size_bounds(Architecture architecture) {
  const bool local_experts_key = architecture == Architecture::mixtral || architecture == Architecture::gpt_oss;
  const bool qwen = architecture == Architecture::qwen2_moe || architecture == Architecture::qwen3_moe;
  return {
      {"vocab_size", &ModelConfig::vocab_size, kMaximumModelSize},
      {"hidden_size", &ModelConfig::hidden_size, kMaximumModelSize},
      {qwen ? "moe_intermediate_size" : "intermediate_size", &ModelConfig::expert_ffn_size, kMaximumModelSize},
      {"num_hidden_layers", &ModelConfig::num_layers, kMaximumModelCount},
      {"num_attention_heads", &ModelConfig::num_heads, kMaximumModelCount},
      {"num_key_value_heads", &ModelConfig::num_kv_heads, kMaximumModelCount},
      {"head_dim", &ModelConfig::head_dim, kMaximumModelSize},
      {local_experts_key ? "num_local_experts" : "num_experts", &ModelConfig::num_experts, kMaximumModelCount},
      {"num_experts_per_tok", &ModelConfig::top_k, kMaximumModelCount},
      {"max_position_embeddings", &ModelConfig::max_position_embeddings, kMaximumPositions},
  };
}

// total *= factor; false on int64 overflow.
bool multiply(int64_t& total, int64_t factor) { return !__builtin_mul_overflow(total, factor, &total); }

// Integer arithmetic that throws on int64 overflow, for the parameter counts.
struct Count {
  int64_t value;
  friend Count operator*(Count a, Count b) {
    int64_t result = 0;
    if (__builtin_mul_overflow(a.value, b.value, &result)) fail_overflow();
    return {result};
  }
  friend Count operator+(Count a, Count b) {
    int64_t result = 0;
    if (__builtin_add_overflow(a.value, b.value, &result)) fail_overflow();
    return {result};
  }
  friend Count operator-(Count a, Count b) {
    int64_t result = 0;
    if (__builtin_sub_overflow(a.value, b.value, &result)) fail_overflow();
    return {result};
  }
  [[noreturn]] static void fail_overflow() {
    TEMOE_FAIL("the parameter count of the model exceeds " << std::numeric_limits<int64_t>::max()
                                                           << " (int64); expected smaller sizes");
  }
};

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  for (const SizeBound& size : size_bounds(architecture)) {
    const int64_t value = this->*size.field;
    if (value < 1 || value > size.bound) {
      TEMOE_FAIL(source << ": key '" << size.key << "' is " << value << ", expected an integer in [1, " << size.bound
                        << "]");
    }
  }
  int64_t attention_width = num_heads;
  if (!multiply(attention_width, head_dim) || attention_width > kMaximumModelSize) {
    TEMOE_FAIL(source << ": num_attention_heads " << num_heads << " x head_dim " << head_dim
                      << " exceeds the attention width bound of " << kMaximumModelSize);
  }
  // The parameter counts must fit int64: the per-key bounds alone allow products past 2^63.
  try {
    parameters_active_per_token();
  } catch (const Error& error) {
    TEMOE_FAIL(source << ": " << error.what());
  }
  TEMOE_CHECK(num_heads % num_kv_heads == 0, source << ": num_attention_heads " << num_heads
                                                    << " is not a multiple of num_key_value_heads " << num_kv_heads);
  TEMOE_CHECK(head_dim % 2 == 0, source << ": head_dim " << head_dim << " must be even for rotary embeddings");
  TEMOE_CHECK(top_k <= num_experts, source << ": num_experts_per_tok " << top_k << " exceeds the " << num_experts << " experts");
  const auto check_size = [&](const char* key, int64_t value) {
    if (value < 0 || value > kMaximumModelSize) {
      TEMOE_FAIL(source << ": key '" << key << "' is " << value << ", expected an integer in [0, " << kMaximumModelSize << "]");
    }
  };
  check_size("shared_expert_intermediate_size", shared_expert_ffn_size);
  check_size("intermediate_size", dense_ffn_size);
  check_size("sliding_window", sliding_window);
  TEMOE_CHECK(dense_layers.empty() || static_cast<int64_t>(dense_layers.size()) == num_layers,
              source << ": " << dense_layers.size() << " dense-layer flags for " << num_layers << " layers");
  TEMOE_CHECK(dense_layers.empty() || dense_ffn_size >= 1,
              source << ": dense layers (mlp_only_layers / decoder_sparse_step) need intermediate_size >= 1");
  TEMOE_CHECK(sliding_layers.empty() || static_cast<int64_t>(sliding_layers.size()) == num_layers,
              source << ": layer_types has " << sliding_layers.size() << " entries for " << num_layers << " layers");
  TEMOE_CHECK(std::find(sliding_layers.begin(), sliding_layers.end(), 1) == sliding_layers.end() || sliding_window >= 1,
              source << ": layer_types has sliding_attention layers but sliding_window is " << sliding_window
                     << "; expected a window of at least 1 position");
  TEMOE_CHECK(moe_layer_count() >= 1, source << ": every layer is dense (mlp_only_layers / decoder_sparse_step); "
                                                "expected at least one MoE layer");
}

GateRule ModelConfig::gate_rule() const {
  if (architecture == Architecture::gpt_oss) return GateRule::top_k_softmax;
  return normalize_top_k ? GateRule::renormalised_top_k : GateRule::all_experts_softmax;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return dense_layers.empty() || dense_layers.at(static_cast<size_t>(layer)) == 0;
}

bool ModelConfig::is_sliding_layer(int64_t layer) const {
  return !sliding_layers.empty() && sliding_layers.at(static_cast<size_t>(layer)) != 0;
}

int64_t ModelConfig::moe_layer_count() const {
  if (dense_layers.empty()) return num_layers;
  return static_cast<int64_t>(std::count(dense_layers.begin(), dense_layers.end(), 0));
}

nlohmann::json ModelConfig::to_json() const {
  const ArchitectureNames& names = names_of(architecture);
  const bool qwen = architecture == Architecture::qwen2_moe || architecture == Architecture::qwen3_moe;
  const bool gpt_oss = architecture == Architecture::gpt_oss;
  nlohmann::json json = {
      {"architectures", {names.class_name}},
      {"model_type", names.model_type},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"num_hidden_layers", num_layers},
      {"num_attention_heads", num_heads},
      {"num_key_value_heads", num_kv_heads},
      {"head_dim", head_dim},
      {"num_experts_per_tok", top_k},
      {"max_position_embeddings", max_position_embeddings},
      {"rope_theta", rope_theta},
      {"rms_norm_eps", rms_norm_eps},
      {"tie_word_embeddings", tie_word_embeddings},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
  };
  const bool local_experts_key = architecture == Architecture::mixtral || gpt_oss;
  json[local_experts_key ? "num_local_experts" : "num_experts"] = num_experts;
  if (architecture == Architecture::olmoe || qwen) json["norm_topk_prob"] = normalize_top_k;
  if (qwen) {
    json["moe_intermediate_size"] = expert_ffn_size;
    json["intermediate_size"] = dense_ffn_size;
    json["decoder_sparse_step"] = 1;
    json["use_sliding_window"] = false;
    nlohmann::json only = nlohmann::json::array();
    for (int64_t layer = 0; layer < num_layers; ++layer) {
      if (!is_moe_layer(layer)) only.push_back(layer);
    }
    json["mlp_only_layers"] = only;
    if (architecture == Architecture::qwen2_moe) {
      json["shared_expert_intermediate_size"] = shared_expert_ffn_size;
      json["qkv_bias"] = qkv_bias;
    } else {
      json["attention_bias"] = qkv_bias;
    }
  } else {
    json["intermediate_size"] = expert_ffn_size;
  }
  if (gpt_oss) {
    json["attention_bias"] = qkv_bias;
    json["swiglu_limit"] = swiglu_limit;
    json["sliding_window"] = sliding_window;
    nlohmann::json types = nlohmann::json::array();
    for (int64_t layer = 0; layer < num_layers; ++layer) types.push_back(is_sliding_layer(layer) ? "sliding_attention" : "full_attention");
    json["layer_types"] = types;
    if (yarn) {
      json["rope_scaling"] = {{"rope_type", "yarn"},
                              {"factor", yarn_scaling.factor},
                              {"beta_fast", yarn_scaling.beta_fast},
                              {"beta_slow", yarn_scaling.beta_slow},
                              {"original_max_position_embeddings", yarn_scaling.original_max_position_embeddings},
                              {"truncate", yarn_scaling.truncate}};
    } else {
      json["rope_scaling"] = nullptr;
    }
  }
  return json;
}

namespace {

// Parameters of one SwiGLU FFN of width `width` (gate, up, down), biases included when asked.
Count swiglu_parameters(Count hidden, Count width, bool biases) {
  return Count{3} * hidden * width + (biases ? Count{2} * width + hidden : Count{0});
}

}  // namespace

int64_t ModelConfig::parameters_total() const {
  const Count hidden{hidden_size}, heads{num_heads}, kv_heads{num_kv_heads}, dim{head_dim}, experts{num_experts};
  const Count qk_norm_parameters = !qk_norm ? Count{0} : qk_norm_per_head ? Count{2} * dim : dim * (heads + kv_heads);
  const Count attention = hidden * dim * (Count{2} * heads + Count{2} * kv_heads) + qk_norm_parameters +
                          (qkv_bias ? dim * (heads + Count{2} * kv_heads) : Count{0}) +
                          (output_bias ? hidden : Count{0}) + (attention_sinks ? heads : Count{0});
  const Count routed = experts * hidden + (router_bias ? experts : Count{0}) +
                       experts * swiglu_parameters(hidden, Count{expert_ffn_size}, expert_bias);
  const Count shared = shared_expert_ffn_size == 0
                           ? Count{0}
                           : swiglu_parameters(hidden, Count{shared_expert_ffn_size}, false) + hidden;
  const Count moe_layers{moe_layer_count()};
  const Count dense_layers_count = Count{num_layers} - moe_layers;
  const Count dense = dense_layers_count.value == 0 ? Count{0} : swiglu_parameters(hidden, Count{dense_ffn_size}, false);
  const Count per_layer_common = attention + Count{2} * hidden;
  const Count embeddings = Count{vocab_size} * hidden * Count{tie_word_embeddings ? 1 : 2};
  return (Count{num_layers} * per_layer_common + moe_layers * (routed + shared) + dense_layers_count * dense + embeddings +
          hidden)
      .value;
}

int64_t ModelConfig::parameters_active_per_token() const {
  const Count per_expert = swiglu_parameters(Count{hidden_size}, Count{expert_ffn_size}, expert_bias);
  return (Count{parameters_total()} - Count{moe_layer_count()} * (Count{num_experts} - Count{top_k}) * per_expert).value;
}

void require_pretrainable(const ModelConfig& config, const std::string& what) {
  if (config.architecture == Architecture::mixtral || config.architecture == Architecture::olmoe) return;
  TEMOE_FAIL(what << ": pretraining supports the mixtral and olmoe architectures; a " << to_string(config.architecture)
                  << " model is loaded frozen (temoe init-model writes one, temoe train trains controllers on it)");
}

void ModelConfig::check_positions(int64_t end_position, const std::string& what) const {
  if (end_position > max_position_embeddings) {
    TEMOE_FAIL(what << ": positions [0, " << end_position << ") exceed max_position_embeddings = "
                    << max_position_embeddings << " of the model's config.json; expected at most "
                    << max_position_embeddings << " positions per sequence");
  }
}

}  // namespace temoe
