#include "src/model/model_presets.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/model/mxfp4.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/safetensors_writer.hpp"

namespace temoe {

ModelConfig model_preset(Architecture architecture, const std::string& preset) {
  ModelConfig config;
  config.architecture = architecture;
  config.normalize_top_k = architecture == Architecture::mixtral || architecture == Architecture::qwen3_moe;
  config.qk_norm = architecture == Architecture::olmoe || architecture == Architecture::qwen3_moe;
  config.qk_norm_per_head = architecture == Architecture::qwen3_moe;
  config.rope_theta = architecture == Architecture::olmoe ? 10000.0 : architecture == Architecture::gpt_oss ? 150000.0 : 1e6;
  config.rms_norm_eps = 1e-5;
  if (preset == "tiny") {
    config.vocab_size = 128;
    config.hidden_size = 64;
    config.num_layers = 2;
    config.num_heads = 4;
    config.num_kv_heads = 2;
    config.head_dim = 16;
    config.expert_ffn_size = 128;
    config.num_experts = 8;
    config.top_k = 2;
    config.max_position_embeddings = 1024;
  } else if (preset == "small") {
    config.vocab_size = 4096;
    config.hidden_size = 512;
    config.num_layers = 8;
    config.num_heads = 8;
    config.num_kv_heads = 4;
    config.head_dim = 64;
    config.expert_ffn_size = 1024;
    config.num_experts = 8;
    config.top_k = 2;
    config.max_position_embeddings = 4096;
  } else {
    TEMOE_FAIL("unknown preset '" << preset << "': expected 'tiny' or 'small'");
  }
  if (architecture == Architecture::qwen2_moe || architecture == Architecture::qwen3_moe) {
    // Qwen's experts are narrower than its dense MLP width (intermediate_size).
    config.dense_ffn_size = 2 * config.expert_ffn_size;
    config.expert_ffn_size /= 2;
  }
  if (architecture == Architecture::qwen2_moe) {
    config.qkv_bias = true;
    config.shared_expert_ffn_size = 2 * config.expert_ffn_size;
  }
  if (architecture == Architecture::gpt_oss) {
    // As the released gpt-oss: biases, sinks, alternating sliding (window 128 there) and full
    // layers, YaRN with factor 32 over an original context of 4096.
    config.qkv_bias = config.output_bias = true;
    config.router_bias = config.expert_bias = config.attention_sinks = config.clamped_swiglu = true;
    config.sliding_window = preset == "tiny" ? 8 : 128;
    config.sliding_layers.resize(static_cast<size_t>(config.num_layers));
    for (int64_t layer = 0; layer < config.num_layers; ++layer) config.sliding_layers[static_cast<size_t>(layer)] = layer % 2 == 0;
    config.yarn = true;
    config.yarn_scaling = {32.0, 32.0, 1.0, 4096, false, 0.1 * std::log(32.0) + 1.0};
  }
  config.validate("preset " + preset);
  return config;
}

namespace {

// A random value for one element of tensor `name` of `shape`.
Tensor random_tensor(const std::string& name, const Shape& shape, uint64_t seed, uint64_t index) {
  Tensor tensor(shape);
  CounterRandom random(seed, {index});
  const bool small_vector = name.ends_with("bias") || name.ends_with("sinks");
  if (shape.size() == 1 && !small_vector) {
    // Norm weights near 1, as after training.
    for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(1.0 + 0.1 * random.normal());
  } else if (shape.size() == 1 || name.ends_with("_bias")) {
    for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(0.1 * random.normal());
  } else {
    // Fan-in scaling keeps activations O(1) through the layers (the fan-in is the last extent of
    // an [out, in] matrix, the middle one of gpt-oss's [E, in, out] experts); routers get a larger
    // scale so that routing is decisive, as it is in trained models.
    const bool router = name.find(".gate.weight") != std::string::npos || name.find(".router.weight") != std::string::npos;
    const int64_t fan_in = shape.size() == 3 ? shape[1] : shape.back();
    const double scale = (router ? 4.0 : 1.0) / std::sqrt(static_cast<double>(fan_in));
    for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(scale * random.normal());
  }
  return tensor;
}

// [E, rows, columns] -> [E, columns, rows]: gpt-oss's x @ W experts in the [out, in] form MXFP4 stores.
Tensor transposed_experts(const Tensor& tensor) {
  const int64_t experts = tensor.dim(0), rows = tensor.dim(1), columns = tensor.dim(2);
  Tensor out({experts, columns, rows});
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < columns; ++c) out.data()[(e * columns + c) * rows + r] = tensor.data()[(e * rows + r) * columns + c];
    }
  }
  return out;
}

// The bytes of an MXFP4 matrix as a U8 tensor (each float one byte value).
NamedTensor byte_tensor(const std::string& name, const std::vector<uint8_t>& bytes, const Shape& shape) {
  Tensor tensor(shape);
  for (size_t i = 0; i < bytes.size(); ++i) tensor.data()[i] = static_cast<float>(bytes[i]);
  return {name, std::move(tensor), DType::u8};
}

}  // namespace

void write_random_model(const ModelConfig& config, uint64_t seed, const std::filesystem::path& directory, DType dtype,
                        int shards, bool mxfp4_experts) {
  TEMOE_CHECK(!mxfp4_experts || has_fused_experts(config),
              "MXFP4 experts: only gpt-oss stores its experts in MXFP4, not " << to_string(config.architecture));
  TEMOE_CHECK(dtype != DType::u8, "random model weights: dtype U8 is for MXFP4 blocks only; expected F32, BF16 or F16");
  std::vector<NamedTensor> tensors;
  uint64_t tensor_index = 0;
  // The values are drawn for the dense form of every tensor, so that an MXFP4 model is the
  // quantised version of the F32 / BF16 one with the same seed.
  for (const auto& [name, shape] : expected_tensors(config, ExpertStorage::dense)) {
    Tensor tensor = random_tensor(name, shape, seed, tensor_index++);
    const bool fused_matrix = name.ends_with("experts.gate_up_proj") || name.ends_with("experts.down_proj");
    if (mxfp4_experts && fused_matrix) {
      const Tensor stored = transposed_experts(tensor);  // [E, out, in]
      const int64_t rows = stored.dim(0) * stored.dim(1), columns = stored.dim(2);
      const Mxfp4Matrix matrix = quantize_mxfp4(stored.to_vector(), rows, columns);
      const int64_t groups = columns / kMxfp4BlockSize;
      tensors.push_back(byte_tensor(name + "_blocks", matrix.blocks, {stored.dim(0), stored.dim(1), groups, kMxfp4BlockSize / 2}));
      tensors.push_back(byte_tensor(name + "_scales", matrix.scales, {stored.dim(0), stored.dim(1), groups}));
      continue;
    }
    tensors.push_back({name, std::move(tensor), std::nullopt});
  }
  std::filesystem::create_directories(directory);
  write_safetensors_checkpoint(directory, tensors, dtype, shards);
  nlohmann::json json = config.to_json();
  json["torch_dtype"] = dtype == DType::f32 ? "float32" : dtype == DType::bf16 ? "bfloat16" : "float16";
  if (mxfp4_experts) {
    json["quantization_config"] = {{"quant_method", "mxfp4"},
                                   {"modules_to_not_convert",
                                    {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}}};
  }
  write_file_atomically(directory / "config.json", [&](std::ostream& stream) { stream << json.dump(2) << "\n"; });
}

}  // namespace temoe
