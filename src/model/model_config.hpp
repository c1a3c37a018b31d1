#pragma once
// The architecture of a decoder-only MoE transformer, read from a Hugging Face config.json.
// Covers the Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE and gpt-oss families.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace temoe {

enum class Architecture { mixtral, olmoe, qwen2_moe, qwen3_moe, gpt_oss };

// How the k chosen experts' combine weights follow from the router logits (inside a held mask the
// k experts are the top-k of the logits the mask allows; the rule itself does not change):
//   all_experts_softmax: softmax over all E logits, the k chosen probabilities used as they are
//                        (OLMoE, Qwen with norm_topk_prob = false): a held mask leaves the gates
//                        the teacher's own probabilities;
//   renormalised_top_k:  the same probabilities divided by their sum over the k (Mixtral,
//                        norm_topk_prob = true);
//   top_k_softmax:       softmax over the k chosen logits alone (gpt-oss; the router has a bias).
enum class GateRule { all_experts_softmax, renormalised_top_k, top_k_softmax };

// YaRN rotary scaling (rope_scaling.rope_type = "yarn"), as Hugging Face computes it.
struct YarnScaling {
  double factor = 1.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  int64_t original_max_position_embeddings = 0;
  bool truncate = true;            // floor / ceil of the correction range
  double attention_factor = 1.0;   // multiplies cos and sin (0.1 ln(factor) + 1 unless given)
};

// Upper bounds that validate() enforces (config.json is read from files a user may not control):
// sizes (vocab_size, hidden_size, intermediate_size, head_dim, and num_attention_heads x head_dim)
// at most 2^24, counts (layers, heads, experts, k) at most 2^16, max_position_embeddings at most
// 2^31 - 1 (positions are int32 row indices); and the parameter count must fit int64.
inline constexpr int64_t kMaximumModelSize = int64_t{1} << 24;
inline constexpr int64_t kMaximumModelCount = int64_t{1} << 16;
inline constexpr int64_t kMaximumPositions = (int64_t{1} << 31) - 1;

std::string to_string(Architecture architecture);  // the command-line name: "qwen2-moe", "gpt-oss", ...
// "mixtral", "olmoe", "qwen2-moe", "qwen3-moe" or "gpt-oss" (underscores accepted too)
Architecture parse_architecture(const std::string& name);
std::string model_type_of(Architecture architecture);  // config.json's model_type: "qwen2_moe", ...

struct ModelConfig {
  Architecture architecture = Architecture::mixtral;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // d_model
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t expert_ffn_size = 0;     // width of one routed expert (Qwen: moe_intermediate_size)
  int64_t num_experts = 0;         // E
  int64_t top_k = 0;               // k
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool normalize_top_k = true;     // Mixtral renormalises the top-k weights; OLMoE does not
  bool qk_norm = false;            // q_norm / k_norm tensors present
  bool qk_norm_per_head = false;   // Qwen3: RMSNorm over each head's head_dim; OLMoE: the whole projection
  bool tie_word_embeddings = false;

  // Qwen2-MoE and gpt-oss.
  bool qkv_bias = false;            // q, k, v projections have biases (Qwen2-MoE, gpt-oss)
  bool output_bias = false;         // o_proj has a bias (gpt-oss)
  // Qwen2-MoE's shared expert: a SwiGLU FFN of this width on every token, scaled by
  // sigmoid(shared_expert_gate . x); 0 = none. Dense (every rank holds it), never part of a mask.
  int64_t shared_expert_ffn_size = 0;
  // Qwen: dense SwiGLU layers (mlp_only_layers, decoder_sparse_step) of width dense_ffn_size
  // (intermediate_size); one flag per layer, empty when every layer is an MoE layer.
  int64_t dense_ffn_size = 0;
  std::vector<uint8_t> dense_layers;

  // gpt-oss.
  bool router_bias = false;
  bool expert_bias = false;         // gate_up_proj_bias, down_proj_bias
  bool attention_sinks = false;     // a learned logit per head in every softmax's denominator
  bool clamped_swiglu = false;      // (clamp(up, -limit, limit) + 1) * g sigmoid(alpha g), g = min(gate, limit)
  double swiglu_limit = 7.0;
  double swiglu_alpha = 1.702;
  int64_t sliding_window = 0;       // keys within this many positions (itself included) on sliding layers
  std::vector<uint8_t> sliding_layers;  // layer_types: 1 = "sliding_attention"; empty = all full
  bool yarn = false;
  YarnScaling yarn_scaling;

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

  GateRule gate_rule() const;
  bool is_moe_layer(int64_t layer) const;
  bool is_sliding_layer(int64_t layer) const;
  int64_t moe_layer_count() const;

  // Throw temoe::Error on int64 overflow (which validate() refuses).
  int64_t parameters_total() const;
  int64_t parameters_active_per_token() const;
  // The input embedding, which a token reads rather than computes with (published "active" counts
  // of gpt-oss leave it out).
  int64_t parameters_embedding() const { return vocab_size * hidden_size; }
  int64_t parameters_per_expert() const {
    return 3 * hidden_size * expert_ffn_size + (expert_bias ? 2 * expert_ffn_size + hidden_size : 0);
  }
};

// Pretraining (the backward pass, random initialisation to pretrain from) covers Mixtral and OLMoE;
// throws naming `what` and the architecture for the others (they are loaded frozen).
void require_pretrainable(const ModelConfig& config, const std::string& what);

}  // namespace temoe
