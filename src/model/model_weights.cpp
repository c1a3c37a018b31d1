#include "src/model/model_weights.hpp"

#include <algorithm>
#include <sstream>

#include <sstream>

#include "src/core/error.hpp"
#include "src/model/parameter_names.hpp"

namespace temoe {

namespace {

void check_tensor_set(const SafetensorsCheckpoint& checkpoint, const ModelConfig& config) {
  const auto expected = expected_tensors(config);
  std::vector<std::string> missing, extra;
  for (const auto& [name, shape] : expected) {
    if (!checkpoint.contains(name)) missing.push_back(name);
  }
  for (const auto& name : checkpoint.tensor_names()) {
    if (!expected.count(name)) extra.push_back(name);
  }
  const auto list = [](const std::vector<std::string>& names) {
    std::ostringstream stream;
    for (size_t i = 0; i < names.size() && i < 5; ++i) stream << (i ? ", " : "") << "'" << names[i] << "'";
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
  }
}

}  // namespace

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
  check_tensor_set(checkpoint, config);
  ModelWeights weights;
  weights.local_experts = local_experts;
  weights.embedding = checkpoint.load(embedding_name(), {config.vocab_size, config.hidden_size});
  weights.final_norm = checkpoint.load(final_norm_name(), {config.hidden_size});
  weights.lm_head = config.tie_word_embeddings ? weights.embedding
                                               : checkpoint.load(lm_head_name(), {config.vocab_size, config.hidden_size});
  const auto load_layer_tensor = [&](int64_t layer, LayerTensor tensor) {
    return checkpoint.load(layer_tensor_name(config, layer, tensor), layer_tensor_shape(config, tensor));
  };
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    LayerWeights layer_weights;
    layer_weights.input_norm = load_layer_tensor(layer, LayerTensor::input_norm);
    layer_weights.q_proj = load_layer_tensor(layer, LayerTensor::q_proj);
    layer_weights.k_proj = load_layer_tensor(layer, LayerTensor::k_proj);
    layer_weights.v_proj = load_layer_tensor(layer, LayerTensor::v_proj);
    layer_weights.o_proj = load_layer_tensor(layer, LayerTensor::o_proj);
    if (config.qk_norm) {
      layer_weights.q_norm = load_layer_tensor(layer, LayerTensor::q_norm);
      layer_weights.k_norm = load_layer_tensor(layer, LayerTensor::k_norm);
    }
    layer_weights.post_attention_norm = load_layer_tensor(layer, LayerTensor::post_attention_norm);
    layer_weights.router = load_layer_tensor(layer, LayerTensor::router);
    for (const int64_t expert : local_experts.ids()) {
      const auto load_expert_tensor = [&](ExpertTensor tensor) {
        return checkpoint.load(expert_tensor_name(config, layer, expert, tensor), expert_tensor_shape(config, tensor));
      };
      layer_weights.experts.push_back({load_expert_tensor(ExpertTensor::gate_proj),
                                       load_expert_tensor(ExpertTensor::up_proj),
                                       load_expert_tensor(ExpertTensor::down_proj)});
    }
    weights.layers.push_back(std::move(layer_weights));
  }
  return weights;
}

int64_t resident_weight_bytes(const ModelConfig& config, int64_t experts_per_rank) {
  const int64_t parameters =
      config.parameters_total() - config.num_layers * (config.num_experts - experts_per_rank) * config.parameters_per_expert();
  return parameters * static_cast<int64_t>(sizeof(float));
}

}  // namespace temoe
