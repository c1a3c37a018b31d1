#include "src/model/model_weights.hpp"

#include <algorithm>
#include <sstream>

#include "src/core/error.hpp"
#include "src/model/mxfp4.hpp"
#include "src/model/parameter_names.hpp"

namespace temoe {

namespace {

void check_tensor_set(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config, ExpertStorage storage) {
  const auto expected = expected_tensors(config, storage);
  std::vector<std::string> missing, extra;
  for (const auto& [name, shape] : expected) {
    if (!checkpoint.contains(name)) missing.push_back(name + "' (expected shape " + shape_string(shape) + ")");
  }
  for (const auto& name : checkpoint.tensor_names()) {
    if (!expected.count(name)) extra.push_back(name);
  }
  const auto list = [](const std::vector<std::string>& names) {
    std::ostringstream stream;
    for (size_t i = 0; i < names.size() && i < 5; ++i) {
      stream << (i ? ", " : "") << "'" << names[i] << (names[i].back() == ')' ? "" : "'");
    }
    if (names.size() > 5) stream << " and " << names.size() - 5 << " more";
    return stream.str();
  };
  if (!missing.empty()) {
    TEMOE_FAIL(checkpoint.directory().string() << ": " << missing.size() << " tensor(s) that config.json implies are missing: "
                                               << list(missing));
  }
  if (!extra.empty()) {
    TEMOE_FAIL(checkpoint.directory().string() << ": " << extra.size() << " tensor(s) that config.json does not imply: "
                                               << list(extra) << " (wrong architecture or config?)");
  }
  for (const auto& [name, shape] : expected) {
    const auto& entry = checkpoint.entry(name);
    if (entry.shape != shape) {
      TEMOE_FAIL(checkpoint.file_of(name).string() << ": tensor '" << name << "' has shape " << shape_string(entry.shape)
                                                   << ", but config.json implies " << shape_string(shape));
    }
    const bool raw = name.ends_with("_blocks") || name.ends_with("_scales");
    if (raw != (entry.dtype == DType::u8)) {
      TEMOE_FAIL(checkpoint.file_of(name).string() << ": tensor '" << name << "' has dtype " << to_string(entry.dtype)
                                                   << ", expected " << (raw ? "U8 (MXFP4)" : "F32, F16 or BF16"));
    }
  }
}

// gpt-oss keeps its experts MXFP4-quantised when the checkpoint holds *_blocks tensors.
ExpertStorage expert_storage_of(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config) {
  if (!has_fused_experts(config)) return ExpertStorage::dense;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    if (checkpoint.contains(fused_expert_tensor_name(layer, FusedExpertTensor::gate_up_proj_blocks)) ||
        checkpoint.contains(fused_expert_tensor_name(layer, FusedExpertTensor::down_proj_blocks))) {
      return ExpertStorage::mxfp4;
    }
  }
  return ExpertStorage::dense;
}

// Columns first, first + step, ... (count of them) of `matrix` [rows, columns], as a [count, rows]
// matrix: gpt-oss stores W for x @ W, temoe computes x W^T.
Tensor transposed_columns(const float* matrix, int64_t rows, int64_t columns, int64_t first, int64_t step, int64_t count) {
  Tensor out({count, rows});
  for (int64_t c = 0; c < count; ++c) {
    for (int64_t r = 0; r < rows; ++r) out.data()[c * rows + r] = matrix[r * columns + first + c * step];
  }
  return out;
}

Tensor strided_values(const float* values, int64_t first, int64_t step, int64_t count) {
  Tensor out({count});
  for (int64_t i = 0; i < count; ++i) out.data()[i] = values[first + i * step];
  return out;
}

// Rows of `matrix` [rows, columns]: first, first + step, ... (count of them).
Tensor strided_rows(const float* matrix, int64_t columns, int64_t first, int64_t step, int64_t count) {
  Tensor out({count, columns});
  for (int64_t r = 0; r < count; ++r) {
    std::copy_n(matrix + (first + r * step) * columns, columns, out.data() + r * columns);
  }
  return out;
}

// One expert of a gpt-oss layer, read from the fused tensors (only its rows): the gate and up
// projections are interleaved along the 2F outputs (even = gate, odd = up).
ExpertWeights load_fused_expert(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config, int64_t layer,
                                int64_t expert, ExpertStorage storage) {
  const int64_t d = config.hidden_size, f = config.expert_ffn_size;
  const auto name = [&](FusedExpertTensor tensor) { return fused_expert_tensor_name(layer, tensor); };
  const auto shape = [&](FusedExpertTensor tensor) { return fused_expert_tensor_shape(config, tensor); };
  ExpertWeights weights;
  const Tensor gate_up_bias =
      checkpoint.load_rows(name(FusedExpertTensor::gate_up_proj_bias), shape(FusedExpertTensor::gate_up_proj_bias), expert, 1);
  weights.gate_bias = strided_values(gate_up_bias.data(), 0, 2, f);
  weights.up_bias = strided_values(gate_up_bias.data(), 1, 2, f);
  weights.down_bias =
      checkpoint.load_rows(name(FusedExpertTensor::down_proj_bias), shape(FusedExpertTensor::down_proj_bias), expert, 1)
          .reshaped({d});
  if (storage == ExpertStorage::dense) {
    // gate_up_proj [E, D, 2F] and down_proj [E, F, D] are applied as x @ W.
    const Tensor gate_up = checkpoint.load_rows(name(FusedExpertTensor::gate_up_proj), shape(FusedExpertTensor::gate_up_proj), expert, 1);
    weights.gate_proj = transposed_columns(gate_up.data(), d, 2 * f, 0, 2, f);
    weights.up_proj = transposed_columns(gate_up.data(), d, 2 * f, 1, 2, f);
    const Tensor down = checkpoint.load_rows(name(FusedExpertTensor::down_proj), shape(FusedExpertTensor::down_proj), expert, 1);
    weights.down_proj = transposed_columns(down.data(), f, d, 0, 1, d);
    return weights;
  }
  // MXFP4 blocks are [out_features, in_features] already: gate_up [2F, D], down [D, F].
  const auto dequantized = [&](FusedExpertTensor blocks, FusedExpertTensor scales, int64_t rows, int64_t columns) {
    const auto block_bytes = checkpoint.load_rows_raw(name(blocks), shape(blocks), DType::u8, expert, 1);
    const auto scale_bytes = checkpoint.load_rows_raw(name(scales), shape(scales), DType::u8, expert, 1);
    Tensor matrix({rows, columns});
    dequantize_mxfp4(block_bytes, scale_bytes, rows, columns, matrix.data());
    return matrix;
  };
  const Tensor gate_up = dequantized(FusedExpertTensor::gate_up_proj_blocks, FusedExpertTensor::gate_up_proj_scales, 2 * f, d);
  weights.gate_proj = strided_rows(gate_up.data(), d, 0, 2, f);
  weights.up_proj = strided_rows(gate_up.data(), d, 1, 2, f);
  weights.down_proj = dequantized(FusedExpertTensor::down_proj_blocks, FusedExpertTensor::down_proj_scales, d, f);
  return weights;
}

}  // namespace

ExpertActivation expert_activation_of(const ModelConfig& config) {
  return {config.clamped_swiglu, static_cast<float>(config.swiglu_limit), static_cast<float>(config.swiglu_alpha)};
}

ExpertSet::ExpertSet(int64_t first, int64_t count) {
  TEMOE_CHECK(first >= 0 && count >= 0, "expert range [" << first << ", " << first + count << ") is not a range of ids");
  for (int64_t expert = first; expert < first + count; ++expert) ids_.push_back(expert);
}

ExpertSet ExpertSet::of(std::vector<int64_t> ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    TEMOE_CHECK(ids[i] >= 0 && (i == 0 || ids[i] > ids[i - 1]),
                "expert ids must be ascending, distinct and non-negative; id " << ids[i] << " at position " << i
                                                                                << " is not");
  }
  ExpertSet set;
  set.ids_ = std::move(ids);
  return set;
}

int64_t ExpertSet::local_index(int64_t expert) const {
  const auto found = std::lower_bound(ids_.begin(), ids_.end(), expert);
  return found != ids_.end() && *found == expert ? found - ids_.begin() : -1;
}

std::string ExpertSet::describe() const {
  std::ostringstream text;
  if (!ids_.empty() && ids_.back() - ids_.front() + 1 == count()) {
    text << "[" << ids_.front() << ", " << ids_.back() + 1 << ")";
    return text.str();
  }
  text << "{";
  for (size_t i = 0; i < ids_.size(); ++i) text << (i ? ", " : "") << ids_[i];
  text << "}";
  return text.str();
}

ModelWeights load_model_weights(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config,
                                ExpertSet local_experts) {
  TEMOE_CHECK(local_experts.count() == 0 || local_experts.ids().back() < config.num_experts,
              "experts " << local_experts.describe() << " outside the model's " << config.num_experts << " experts");
  const ExpertStorage storage = expert_storage_of(checkpoint, config);
  check_tensor_set(checkpoint, config, storage);
  ModelWeights weights;
  weights.local_experts = local_experts;
  weights.expert_activation = expert_activation_of(config);
  weights.embedding = checkpoint.load(embedding_name(), {config.vocab_size, config.hidden_size});
  weights.final_norm = checkpoint.load(final_norm_name(), {config.hidden_size});
  weights.lm_head = config.tie_word_embeddings ? weights.embedding
                                               : checkpoint.load(lm_head_name(), {config.vocab_size, config.hidden_size});
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    const auto load_layer_tensor = [&](LayerTensor tensor) {
      if (!has_layer_tensor(config, layer, tensor)) return Tensor();
      return checkpoint.load(layer_tensor_name(config, layer, tensor), layer_tensor_shape(config, tensor));
    };
    LayerWeights w;
    w.input_norm = load_layer_tensor(LayerTensor::input_norm);
    w.q_proj = load_layer_tensor(LayerTensor::q_proj);
    w.k_proj = load_layer_tensor(LayerTensor::k_proj);
    w.v_proj = load_layer_tensor(LayerTensor::v_proj);
    w.o_proj = load_layer_tensor(LayerTensor::o_proj);
    w.q_norm = load_layer_tensor(LayerTensor::q_norm);
    w.k_norm = load_layer_tensor(LayerTensor::k_norm);
    w.q_bias = load_layer_tensor(LayerTensor::q_bias);
    w.k_bias = load_layer_tensor(LayerTensor::k_bias);
    w.v_bias = load_layer_tensor(LayerTensor::v_bias);
    w.o_bias = load_layer_tensor(LayerTensor::o_bias);
    w.sinks = load_layer_tensor(LayerTensor::sinks);
    w.post_attention_norm = load_layer_tensor(LayerTensor::post_attention_norm);
    if (!config.is_moe_layer(layer)) {
      w.dense_mlp = ExpertWeights::without_biases(load_layer_tensor(LayerTensor::dense_gate_proj),
                                                  load_layer_tensor(LayerTensor::dense_up_proj),
                                                  load_layer_tensor(LayerTensor::dense_down_proj));
      weights.layers.push_back(std::move(w));
      continue;
    }
    w.router = load_layer_tensor(LayerTensor::router);
    w.router_bias = load_layer_tensor(LayerTensor::router_bias);
    if (config.shared_expert_ffn_size > 0) {
      w.shared_expert = ExpertWeights::without_biases(load_layer_tensor(LayerTensor::shared_gate_proj),
                                                      load_layer_tensor(LayerTensor::shared_up_proj),
                                                      load_layer_tensor(LayerTensor::shared_down_proj));
      w.shared_expert_gate = load_layer_tensor(LayerTensor::shared_expert_gate);
    }
    for (const int64_t expert : local_experts.ids()) {
      if (has_fused_experts(config)) {
        w.experts.push_back(load_fused_expert(checkpoint, config, layer, expert, storage));
        continue;
      }
      const auto load_expert_tensor = [&](ExpertTensor tensor) {
        return checkpoint.load(expert_tensor_name(config, layer, expert, tensor), expert_tensor_shape(config, tensor));
      };
      w.experts.push_back(ExpertWeights::without_biases(load_expert_tensor(ExpertTensor::gate_proj),
                                                        load_expert_tensor(ExpertTensor::up_proj),
                                                        load_expert_tensor(ExpertTensor::down_proj)));
    }
    weights.layers.push_back(std::move(w));
  }
  return weights;
}

int64_t resident_weight_bytes(const ModelConfig& config, int64_t experts_per_rank) {
  const int64_t parameters = config.parameters_total() -
                             config.moe_layer_count() * (config.num_experts - experts_per_rank) * config.parameters_per_expert();
  return parameters * static_cast<int64_t>(sizeof(float));
}

namespace {
Tensor uploaded(const Tensor& tensor, Device device) { return tensor.defined() ? to_device(tensor, device) : Tensor(); }

LoraAdapter uploaded(const LoraAdapter& adapter, Device device) {
  return {uploaded(adapter.a, device), uploaded(adapter.b, device), uploaded(adapter.scaled_b, device)};
}

ExpertWeights uploaded(const ExpertWeights& expert, Device device) {
  ExpertWeights copy;
  copy.gate_proj = uploaded(expert.gate_proj, device);
  copy.up_proj = uploaded(expert.up_proj, device);
  copy.down_proj = uploaded(expert.down_proj, device);
  copy.gate_bias = uploaded(expert.gate_bias, device);
  copy.up_bias = uploaded(expert.up_bias, device);
  copy.down_bias = uploaded(expert.down_bias, device);
  copy.gate_lora = uploaded(expert.gate_lora, device);
  copy.up_lora = uploaded(expert.up_lora, device);
  copy.down_lora = uploaded(expert.down_lora, device);
  return copy;
}
}  // namespace

ModelWeights weights_on_device(const ModelWeights& host, Device device) {
  ModelWeights copy;
  copy.local_experts = host.local_experts;
  copy.expert_activation = host.expert_activation;
  copy.embedding = uploaded(host.embedding, device);
  copy.final_norm = uploaded(host.final_norm, device);
  const bool tied = host.lm_head.defined() && host.embedding.defined() && host.lm_head.data() == host.embedding.data() &&
                    host.lm_head.shape() == host.embedding.shape();
  copy.lm_head = tied ? copy.embedding : uploaded(host.lm_head, device);
  for (const LayerWeights& layer : host.layers) {
    LayerWeights to;
    for (auto [from, into] : {std::pair{&layer.input_norm, &to.input_norm}, std::pair{&layer.q_proj, &to.q_proj},
                              std::pair{&layer.k_proj, &to.k_proj}, std::pair{&layer.v_proj, &to.v_proj},
                              std::pair{&layer.o_proj, &to.o_proj}, std::pair{&layer.q_norm, &to.q_norm},
                              std::pair{&layer.k_norm, &to.k_norm}, std::pair{&layer.q_bias, &to.q_bias},
                              std::pair{&layer.k_bias, &to.k_bias}, std::pair{&layer.v_bias, &to.v_bias},
                              std::pair{&layer.o_bias, &to.o_bias}, std::pair{&layer.sinks, &to.sinks},
                              std::pair{&layer.post_attention_norm, &to.post_attention_norm},
                              std::pair{&layer.router, &to.router}, std::pair{&layer.router_bias, &to.router_bias},
                              std::pair{&layer.shared_expert_gate, &to.shared_expert_gate}}) {
      *into = uploaded(*from, device);
    }
    for (const ExpertWeights& expert : layer.experts) to.experts.push_back(uploaded(expert, device));
    to.shared_expert = uploaded(layer.shared_expert, device);
    to.dense_mlp = uploaded(layer.dense_mlp, device);
    for (auto [from, into] : {std::pair{&layer.q_lora, &to.q_lora}, std::pair{&layer.k_lora, &to.k_lora},
                              std::pair{&layer.v_lora, &to.v_lora}, std::pair{&layer.o_lora, &to.o_lora},
                              std::pair{&layer.router_lora, &to.router_lora}}) {
      *into = uploaded(*from, device);
    }
    copy.layers.push_back(std::move(to));
  }
  return copy;
}

}  // namespace temoe
