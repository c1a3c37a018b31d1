#pragma once
// The architecture of a decoder-only MoE transformer, read from a Hugging Face config.json.
// Covers the Mixtral and OLMoE families.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace temoe {

enum class Architecture { mixtral, olmoe };

// Upper bounds that validate() enforces (config.json is read from files a user may not control):
// sizes (vocab_size, hidden_size, intermediate_size, head_dim, and num_attention_heads x head_dim)
// at most 2^24, counts (layers, heads, experts, k) at most 2^16, max_position_embeddings at most
// 2^31 - 1 (positions are int32 row indices); and the parameter count must fit int64.
inline constexpr int64_t kMaximumModelSize = int64_t{1} << 24;
inline constexpr int64_t kMaximumModelCount = int64_t{1} << 16;
inline constexpr int64_t kMaximumPositions = (int64_t{1} << 31) - 1;

std::string to_string(Architecture architecture);
Architecture parse_architecture(const std::string& name);  // "mixtral" or "olmoe"

struct ModelConfig {
  Architecture architecture = Architecture::mixtral;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // d_model
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t expert_ffn_size = 0;     // intermediate_size of one expert
  int64_t num_experts = 0;         // E
  int64_t top_k = 0;               // k
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool normalize_top_k = true;     // Mixtral renormalises the top-k weights; OLMoE does not
  bool qk_norm = false;            // OLMoE: RMSNorm over the whole q and k projections
  bool tie_word_embeddings = false;

  // Parses config.json; `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source);
  static ModelConfig from_file(const std::filesystem::path& config_json);
  // The config.json a Hugging Face model of this architecture carries.
  nlohmann::json to_json() const;

  // Bounds, shape and consistency checks (every size in [1, its bound], heads divide, k <= E, ...);
  // throws naming `source`, the config.json key, the value and the bound.
  void validate(const std::string& source) const;
  // Throws, naming max_position_embeddings and both numbers, unless positions [0, end_position) are
  // within max_position_embeddings. `what` names the caller (a forward, a KV cache).
  void check_positions(int64_t end_position, const std::string& what) const;

  // Throw temoe::Error on int64 overflow (which validate() refuses).
  int64_t parameters_total() const;
  int64_t parameters_active_per_token() const;
  int64_t parameters_per_expert() const { return 3 * hidden_size * expert_ffn_size; }
};

}  // namespace temoe
