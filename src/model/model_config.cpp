#include "src/model/model_config.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

std::string to_string(Architecture architecture) {
  return architecture == Architecture::mixtral ? "mixtral" : "olmoe";
}

Architecture parse_architecture(const std::string& name) {
  if (name == "mixtral") return Architecture::mixtral;
  if (name == "olmoe") return Architecture::olmoe;
  TEMOE_FAIL("unknown architecture '" << name << "': expected 'mixtral' or 'olmoe'");
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
    const std::string name = json["architectures"][0].get<std::string>();
    model_type = name == "MixtralForCausalLM" ? "mixtral" : name == "OlmoeForCausalLM" ? "olmoe" : name;
  } else {
    TEMOE_FAIL(source << ": missing key 'model_type' (expected \"mixtral\" or \"olmoe\")");
  }
  if (model_type == "mixtral") return Architecture::mixtral;
  if (model_type == "olmoe") return Architecture::olmoe;
  TEMOE_FAIL(source << ": unknown architecture '" << model_type
                    << "'; temoe supports MixtralForCausalLM (model_type \"mixtral\") and OlmoeForCausalLM (\"olmoe\")");
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) TEMOE_FAIL(source << ": expected a JSON object");
  const JsonFields fields(json, source);
  ModelConfig config;
  config.architecture = architecture_of(json, source);
  const bool mixtral = config.architecture == Architecture::mixtral;
  config.vocab_size = fields.positive_integer("vocab_size");
  config.hidden_size = fields.positive_integer("hidden_size");
  config.expert_ffn_size = fields.positive_integer("intermediate_size");
  config.num_layers = fields.positive_integer("num_hidden_layers");
  config.num_heads = fields.positive_integer("num_attention_heads");
  config.num_kv_heads = fields.positive_integer("num_key_value_heads", config.num_heads);
  config.head_dim = fields.positive_integer("head_dim", 0);
  if (config.head_dim == 0) {
    // Hugging Face's default (MixtralConfig, OlmoeConfig): hidden_size / num_attention_heads.
    if (config.hidden_size % config.num_heads != 0) {
      TEMOE_FAIL(source << ": key 'head_dim' is missing and hidden_size " << config.hidden_size
                        << " is not a multiple of num_attention_heads " << config.num_heads
                        << "; expected head_dim = hidden_size / num_attention_heads to be an integer >= 1");
    }
    config.head_dim = config.hidden_size / config.num_heads;
  }
  config.num_experts = fields.positive_integer(mixtral ? "num_local_experts" : "num_experts");
  config.top_k = fields.positive_integer("num_experts_per_tok");
  config.max_position_embeddings = fields.positive_integer("max_position_embeddings", 4096);
  config.rope_theta = fields.positive_number("rope_theta", mixtral ? 1e6 : 10000.0);
  config.rms_norm_eps = fields.positive_number("rms_norm_eps", 1e-5);
  config.normalize_top_k = mixtral ? true : fields.boolean("norm_topk_prob", false);
  config.qk_norm = !mixtral;
  config.tie_word_embeddings = fields.boolean("tie_word_embeddings", false);
  // Settings that change the computation and that temoe does not implement are refused, not ignored.
  fields.require_value("hidden_act", "silu", "SwiGLU experts");
  fields.require_value("sliding_window", nullptr, "full causal attention");
  fields.require_value("rope_scaling", nullptr, "plain rotary embeddings");
  fields.require_value("clip_qkv", nullptr, "no clipping of q, k, v");
  fields.require_value("attention_bias", false, "projections without bias");
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
  const bool mixtral = architecture == Architecture::mixtral;
  return {
      {"vocab_size", &ModelConfig::vocab_size, kMaximumModelSize},
      {"hidden_size", &ModelConfig::hidden_size, kMaximumModelSize},
      {"intermediate_size", &ModelConfig::expert_ffn_size, kMaximumModelSize},
      {"num_hidden_layers", &ModelConfig::num_layers, kMaximumModelCount},
      {"num_attention_heads", &ModelConfig::num_heads, kMaximumModelCount},
      {"num_key_value_heads", &ModelConfig::num_kv_heads, kMaximumModelCount},
      {"head_dim", &ModelConfig::head_dim, kMaximumModelSize},
      {mixtral ? "num_local_experts" : "num_experts", &ModelConfig::num_experts, kMaximumModelCount},
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
}

nlohmann::json ModelConfig::to_json() const {
  const bool mixtral = architecture == Architecture::mixtral;
  nlohmann::json json = {
      {"architectures", {mixtral ? "MixtralForCausalLM" : "OlmoeForCausalLM"}},
      {"model_type", mixtral ? "mixtral" : "olmoe"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", expert_ffn_size},
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
  json[mixtral ? "num_local_experts" : "num_experts"] = num_experts;
  if (!mixtral) json["norm_topk_prob"] = normalize_top_k;
  return json;
}

int64_t ModelConfig::parameters_total() const {
  const Count hidden{hidden_size}, heads{num_heads}, kv_heads{num_kv_heads}, dim{head_dim}, experts{num_experts};
  const Count attention = hidden * dim * (Count{2} * heads + Count{2} * kv_heads) +
                          (qk_norm ? dim * (heads + kv_heads) : Count{0});
  const Count per_expert = Count{3} * hidden * Count{expert_ffn_size};
  const Count per_layer = attention + Count{2} * hidden + experts * hidden + experts * per_expert;
  const Count embeddings = Count{vocab_size} * hidden * Count{tie_word_embeddings ? 1 : 2};
  return (Count{num_layers} * per_layer + embeddings + hidden).value;
}

int64_t ModelConfig::parameters_active_per_token() const {
  const Count per_expert = Count{3} * Count{hidden_size} * Count{expert_ffn_size};
  return (Count{parameters_total()} - Count{num_layers} * (Count{num_experts} - Count{top_k}) * per_expert).value;
}

void ModelConfig::check_positions(int64_t end_position, const std::string& what) const {
  if (end_position > max_position_embeddings) {
    TEMOE_FAIL(what << ": positions [0, " << end_position << ") exceed max_position_embeddings = "
                    << max_position_embeddings << " of the model's config.json; expected at most "
                    << max_position_embeddings << " positions per sequence");
  }
}

}  // namespace temoe
