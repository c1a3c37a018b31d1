#pragma once
// LoRA adapters of a model in Hugging Face PEFT's layout, so that a PEFT user loads them with
// PeftModel.from_pretrained and a PEFT checkpoint loads here:
//   DIR/adapter_config.json       peft_type LORA, r, lora_alpha, use_rslora, target_modules, ...
//   DIR/adapter_model.safetensors base_model.model.<module>.lora_A.weight [r, in]
//                                 base_model.model.<module>.lora_B.weight [out, r]
// where <module> is the adapted weight's name without ".weight" (model.layers.0.self_attn.q_proj,
// model.layers.0.block_sparse_moe.experts.3.w1, ...). Which maps can carry one (targets):
//   attention  q_proj, k_proj, v_proj, o_proj of every layer
//   experts    every routed expert's gate, up and down projection, and the FFNs outside the
//              routing (Qwen2-MoE's shared expert, Qwen's dense layers)
//   router     the router (PEFT's "gate" of Mixtral / OLMoE / Qwen, gpt-oss's "router")
// gpt-oss stores its experts fused ([E, ...] tensors, no per-expert modules for PEFT to name), so
// expert adapters are refused there. Each rank holds the adapters of the weights it holds: the
// dense ones, and those of its own experts.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"

namespace temoe {

enum class LoraTarget { attention, experts, router };

// "attention,experts,router" (any non-empty subset, any order); throws naming the bad entry.
std::vector<LoraTarget> parse_lora_targets(const std::string& list);
std::string lora_targets_string(const std::vector<LoraTarget>& targets);

struct LoraSettings {
  int64_t rank = 8;
  double alpha = 16;
  bool rank_stabilised = false;  // PEFT's use_rslora: s = alpha / sqrt(r) instead of alpha / r
  std::vector<LoraTarget> targets = {LoraTarget::attention, LoraTarget::experts};
  double scale() const;
};

// A linear map of this rank's weights that can carry an adapter.
struct LoraSite {
  std::string module;      // PEFT's module name: the weight's name without ".weight"
  LoraTarget target;
  const Tensor* weight;    // the frozen weight [out, in]
  LoraAdapter* adapter;
};

// Every site of `targets` in `weights` (the rank's experts only), in the checkpoint's order.
std::vector<LoraSite> lora_sites(const ModelConfig& config, ModelWeights& weights, const std::vector<LoraTarget>& targets);

// Reads DIR's adapters into `weights` (host tensors) and returns their settings. Every tensor must
// name a module of the model with the shapes that module needs and come in A/B pairs; adapters
// of experts this rank does not hold are checked by name and skipped. Throws naming the file, the
// key, the value and what was expected.
LoraSettings load_lora_adapters(const std::filesystem::path& directory, const ModelConfig& config, ModelWeights& weights);

// New adapters on every site of settings.targets: A from PEFT's default (Kaiming-uniform, bound
// 1 / sqrt(in)), B zero (the adapted model starts as the base model), or B ~ N(0, b_deviation^2)
// when b_deviation > 0 (a test's adapter that changes the logits). Keyed by (seed, module).
void initialize_lora_adapters(const ModelConfig& config, ModelWeights& weights, const LoraSettings& settings,
                              uint64_t seed, double b_deviation = 0.0);

// Writes every defined adapter of `weights` to DIR in PEFT's layout (atomically: a crash leaves
// no half-written adapter directory's files). base_model: what adapter_config.json names as
// base_model_name_or_path.
void write_lora_adapters(const std::filesystem::path& directory, const ModelConfig& config, ModelWeights& weights,
                         const LoraSettings& settings, const std::string& base_model);

}  // namespace temoe
