#include "src/model/model_parameters.hpp"

#include "src/core/error.hpp"
#include "src/model/parameter_names.hpp"

namespace temoe {

namespace {

Tensor zeros_like(const Tensor& tensor) {
  if (!tensor.defined()) return {};
  return Tensor::zeros(tensor.shape());
}

// Calls visit(name, weight member pointer) for every tensor of the rank's weights in Hugging Face
// module order; `tied` lm_head is skipped.
template <typename Weights, typename Visit>
void visit_tensors(const ModelConfig& config, Weights& weights, Visit&& visit) {
  visit(embedding_name(), weights.embedding, false);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    auto& w = weights.layers[static_cast<size_t>(layer)];
    const auto name = [&](LayerTensor tensor) { return layer_tensor_name(config, layer, tensor); };
    visit(name(LayerTensor::input_norm), w.input_norm, false);
    visit(name(LayerTensor::q_proj), w.q_proj, false);
    visit(name(LayerTensor::k_proj), w.k_proj, false);
    visit(name(LayerTensor::v_proj), w.v_proj, false);
    visit(name(LayerTensor::o_proj), w.o_proj, false);
    if (config.qk_norm) {
      visit(name(LayerTensor::q_norm), w.q_norm, false);
      visit(name(LayerTensor::k_norm), w.k_norm, false);
    }
    visit(name(LayerTensor::post_attention_norm), w.post_attention_norm, false);
    visit(name(LayerTensor::router), w.router, false);
    for (size_t local = 0; local < w.experts.size(); ++local) {
      const int64_t expert = weights.local_experts.id(static_cast<int64_t>(local));
      auto& e = w.experts[local];
      visit(expert_tensor_name(config, layer, expert, ExpertTensor::gate_proj), e.gate_proj, true);
      visit(expert_tensor_name(config, layer, expert, ExpertTensor::up_proj), e.up_proj, true);
      visit(expert_tensor_name(config, layer, expert, ExpertTensor::down_proj), e.down_proj, true);
    }
  }
  visit(final_norm_name(), weights.final_norm, false);
  if (!config.tie_word_embeddings) visit(lm_head_name(), weights.lm_head, false);
}

}  // namespace

ModelWeights make_model_gradients(const ModelConfig& config, const ModelWeights& weights) {
  ModelWeights gradients;
  gradients.local_experts = weights.local_experts;
  gradients.embedding = zeros_like(weights.embedding);
  gradients.final_norm = zeros_like(weights.final_norm);
  gradients.lm_head = config.tie_word_embeddings ? gradients.embedding : zeros_like(weights.lm_head);
  for (const auto& w : weights.layers) {
    LayerWeights g;
    g.input_norm = zeros_like(w.input_norm);
    g.q_proj = zeros_like(w.q_proj);
    g.k_proj = zeros_like(w.k_proj);
    g.v_proj = zeros_like(w.v_proj);
    g.o_proj = zeros_like(w.o_proj);
    g.q_norm = zeros_like(w.q_norm);
    g.k_norm = zeros_like(w.k_norm);
    g.post_attention_norm = zeros_like(w.post_attention_norm);
    g.router = zeros_like(w.router);
    for (const auto& e : w.experts) {
      g.experts.push_back(ExpertWeights::without_biases(zeros_like(e.gate_proj), zeros_like(e.up_proj), zeros_like(e.down_proj)));
    }
    gradients.layers.push_back(std::move(g));
  }
  return gradients;
}

void zero_model_gradients(ModelWeights& gradients) {
  const auto zero = [](Tensor& tensor) {
    if (tensor.defined()) tensor.fill(0.0f);
  };
  zero(gradients.embedding);
  zero(gradients.final_norm);
  zero(gradients.lm_head);
  for (auto& g : gradients.layers) {
    for (Tensor* tensor : {&g.input_norm, &g.q_proj, &g.k_proj, &g.v_proj, &g.o_proj, &g.q_norm, &g.k_norm,
                           &g.post_attention_norm, &g.router}) {
      zero(*tensor);
    }
    for (auto& e : g.experts) {
      zero(e.gate_proj);
      zero(e.up_proj);
      zero(e.down_proj);
    }
  }
}

ModelParameters make_model_parameters(const ModelConfig& config, ModelWeights& weights, ModelWeights& gradients) {
  TEMOE_CHECK(gradients.layers.size() == weights.layers.size() &&
                  gradients.local_experts == weights.local_experts,
              "make_model_parameters: the gradients are not laid out as the weights (make_model_gradients)");
  ModelParameters parameters;
  std::vector<Parameter> dense, experts;
  // Pair every weight tensor with the gradient tensor at the same place, by walking both in step.
  std::vector<std::pair<std::string, Tensor>> values, grads;
  std::vector<bool> is_expert;
  visit_tensors(config, weights, [&](const std::string& name, Tensor& tensor, bool expert) {
    values.emplace_back(name, tensor);
    is_expert.push_back(expert);
  });
  visit_tensors(config, gradients, [&](const std::string& name, Tensor& tensor, bool) { grads.emplace_back(name, tensor); });
  for (size_t i = 0; i < values.size(); ++i) {
    TEMOE_CHECK(values[i].second.defined() && grads[i].second.shape() == values[i].second.shape(),
                "make_model_parameters: " << values[i].first << " has no gradient of its shape");
    Parameter parameter{values[i].first, values[i].second, grads[i].second};
    (is_expert[i] ? experts : dense).push_back(parameter);
  }
  for (const auto& parameter : dense) {
    parameters.dense.parameters().push_back(parameter);
    parameters.all.parameters().push_back(parameter);
  }
  for (const auto& parameter : experts) {
    parameters.experts.parameters().push_back(parameter);
    parameters.all.parameters().push_back(parameter);
  }
  return parameters;
}

std::vector<NamedTensor> named_weights(const ModelConfig& config, const ModelWeights& weights) {
  std::vector<NamedTensor> tensors;
  visit_tensors(config, weights, [&](const std::string& name, const Tensor& tensor, bool) { tensors.push_back({name, tensor, std::nullopt}); });
  return tensors;
}

}  // namespace temoe
