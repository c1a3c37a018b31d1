#include "src/model/model_presets.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/safetensors_writer.hpp"

namespace temoe {

ModelConfig model_preset(Architecture architecture, const std::string& preset) {
  ModelConfig config;
  config.architecture = architecture;
  config.normalize_top_k = architecture == Architecture::mixtral;
  config.qk_norm = architecture == Architecture::olmoe;
  config.rope_theta = architecture == Architecture::mixtral ? 1e6 : 10000.0;
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
  config.validate("preset " + preset);
  return config;
}

void write_random_model(const ModelConfig& config, uint64_t seed, const std::filesystem::path& directory, DType dtype,
                        int shards) {
  std::vector<NamedTensor> tensors;
  uint64_t tensor_index = 0;
  for (const auto& [name, shape] : expected_tensors(config)) {
    Tensor tensor(shape);
    CounterRandom random(seed, {tensor_index++});
    if (shape.size() == 1) {
      // Norm weights near 1, as after training.
      for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(1.0 + 0.1 * random.normal());
    } else {
      // Fan-in scaling keeps activations O(1) through the layers; routers get a larger scale so
      // that routing is decisive, as it is in trained models.
      const bool router = name.find(".gate.weight") != std::string::npos;
      const double scale = (router ? 4.0 : 1.0) / std::sqrt(static_cast<double>(shape[1]));
      for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(scale * random.normal());
    }
    tensors.push_back({name, std::move(tensor)});
  }
  std::filesystem::create_directories(directory);
  write_safetensors_checkpoint(directory, tensors, dtype, shards);
  nlohmann::json json = config.to_json();
  json["torch_dtype"] = dtype == DType::f32 ? "float32" : dtype == DType::bf16 ? "bfloat16" : "float16";
  write_file_atomically(directory / "config.json", [&](std::ostream& stream) { stream << json.dump(2) << "\n"; });
}

}  // namespace temoe
