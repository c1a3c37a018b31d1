#include "src/model/moe_transformer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/error.hpp"

namespace temoe {

void check_token_ids(std::span<const int32_t> tokens, int64_t vocab_size, int64_t time, const std::string& source) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      TEMOE_FAIL(source << ": token id " << tokens[i] << " at [" << static_cast<int64_t>(i) / time << ", "
                        << static_cast<int64_t>(i) % time << "] is outside the vocabulary [0, " << vocab_size << ")");
    }
  }
}

MoeTransformer::MoeTransformer(const ModelConfig& config, const ModelWeights& weights, Backend& backend,
                               ExpertExecutor& experts)
    : config_(config), weights_(weights), backend_(backend), experts_(experts), rotary_(rotary_frequencies(config)) {
  TEMOE_CHECK(static_cast<int64_t>(weights.layers.size()) == config.num_layers,
              "weights hold " << weights.layers.size() << " layers, config " << config.num_layers);
}

Tensor MoeTransformer::forward(std::span<const int32_t> tokens, int64_t batch, int64_t time, ForwardRecord* record) {
  ForwardState state = begin(tokens, batch, time);
  if (record) record->layers.assign(static_cast<size_t>(config_.num_layers), {});
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    attention(layer, state);
    const MoeInput input = moe_input(layer, state);
    moe(layer, state, input, {}, record ? &record->layers[static_cast<size_t>(layer)] : nullptr);
  }
  return finish(state);
}

ForwardState MoeTransformer::begin(std::span<const int32_t> tokens, int64_t batch, int64_t time) {
  TEMOE_CHECK(static_cast<int64_t>(tokens.size()) == batch * time,
              "forward: " << tokens.size() << " tokens for batch " << batch << " x time " << time);
  check_token_ids(tokens, config_.vocab_size, time, "tokens");
  config_.check_positions(time, "forward");
  ForwardState state{batch, time, Tensor({batch * time, config_.hidden_size}, backend_.device())};
  backend_.gather_rows(weights_.embedding, tokens, state.residual);
  return state;
}

ForwardState MoeTransformer::begin(KeyValueCache& cache, std::span<const int32_t> tokens, int64_t time) {
  TEMOE_CHECK(cache.layers() == config_.num_layers,
              "decode: a KV cache of " << cache.layers() << " layers for a model of " << config_.num_layers);
  const int64_t first = cache.length();
  TEMOE_CHECK(time >= 1 && first + time <= cache.capacity(),
              "decode: positions [" << first << ", " << first + time << ") do not fit the KV cache's capacity of "
                                    << cache.capacity());
  config_.check_positions(first + time, "decode");
  ForwardState state = begin(tokens, cache.batch(), time);
  state.first_position = first;
  state.cache = &cache;
  return state;
}

Tensor MoeTransformer::finish(const ForwardState& state) {
  const int64_t count = state.batch * state.time;
  Tensor normed({count, config_.hidden_size}, backend_.device());
  backend_.rms_norm(state.residual, weights_.final_norm, static_cast<float>(config_.rms_norm_eps), normed);
  Tensor logits({count, config_.vocab_size}, backend_.device());
  backend_.matmul_transposed(normed, weights_.lm_head, logits, false);
  return logits.reshaped({state.batch, state.time, config_.vocab_size});
}

void MoeTransformer::attention(int64_t layer, ForwardState& state) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  const int64_t batch = state.batch, time = state.time;
  Tensor& residual = state.residual;
  const int64_t count = batch * time, width = config_.hidden_size, head_dim = config_.head_dim;
  const int64_t q_width = config_.num_heads * head_dim, kv_width = config_.num_kv_heads * head_dim;
  const auto eps = static_cast<float>(config_.rms_norm_eps);
  const Device device = backend_.device();
  Tensor normed({count, width}, device);
  backend_.rms_norm(residual, w.input_norm, eps, normed);
  Tensor q({count, q_width}, device), k({count, kv_width}, device), v({count, kv_width}, device);
  backend_.matmul_transposed(normed, w.q_proj, q, false);
  backend_.matmul_transposed(normed, w.k_proj, k, false);
  backend_.matmul_transposed(normed, w.v_proj, v, false);
  if (experts_.adapters_enabled()) {
    apply_lora(backend_, w.q_lora, normed, q);
    apply_lora(backend_, w.k_lora, normed, k);
    apply_lora(backend_, w.v_lora, normed, v);
  }
  if (config_.qkv_bias) {
    backend_.add_bias(q, w.q_bias);
    backend_.add_bias(k, w.k_bias);
    backend_.add_bias(v, w.v_bias);
  }
  if (config_.qk_norm && config_.qk_norm_per_head) {
    // Qwen3 normalises each head's head_dim values with one weight shared by all heads.
    Tensor q_rows = q.reshaped({count * config_.num_heads, head_dim});
    Tensor k_rows = k.reshaped({count * config_.num_kv_heads, head_dim});
    backend_.rms_norm(q_rows, w.q_norm, eps, q_rows);
    backend_.rms_norm(k_rows, w.k_norm, eps, k_rows);
  } else if (config_.qk_norm) {
    // OLMoE normalises the whole projection, before it is split into heads.
    backend_.rms_norm(q, w.q_norm, eps, q);
    backend_.rms_norm(k, w.k_norm, eps, k);
  }
  Tensor q_heads = q.reshaped({batch, time, config_.num_heads, head_dim});
  Tensor k_heads = k.reshaped({batch, time, config_.num_kv_heads, head_dim});
  Tensor attended({batch, time, config_.num_heads, head_dim}, device);
  const int64_t first = state.first_position;
  const auto rotate = [&](Tensor& x) {
    if (config_.yarn) {
      backend_.rotary_with_frequencies(x, rotary_.inverse_frequencies, rotary_.scale, first);
    } else if (state.cache == nullptr) {
      backend_.rotary(x, config_.rope_theta);
    } else {
      backend_.rotary_from(x, config_.rope_theta, first);
    }
  };
  // gpt-oss: sliding layers see the last sliding_window positions; every head has a sink logit.
  const int64_t window = config_.is_sliding_layer(layer) ? config_.sliding_window : 0;
  const Tensor* sinks = config_.attention_sinks ? &w.sinks : nullptr;
  rotate(q_heads);
  rotate(k_heads);
  if (state.cache == nullptr) {
    if (window == 0 && sinks == nullptr) {
      backend_.causal_attention(q_heads, k_heads, v.reshaped(k_heads.shape()), attended);
    } else {
      backend_.windowed_attention(q_heads, k_heads, v.reshaped(k_heads.shape()), 0, window, sinks, attended);
    }
  } else {
    // The chunk's keys and values go to cache rows (b, first + t); its queries then attend to all
    // cached positions up to their own (within the window on sliding layers).
    KeyValueCache& cache = *state.cache;
    const int64_t capacity = cache.capacity();
    TEMOE_CHECK(cache.length(layer) == first, "decode: layer " << layer << " of the KV cache holds " << cache.length(layer)
                                                               << " positions, the chunk starts at " << first);
    std::vector<int32_t> rows(static_cast<size_t>(count));
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < time; ++t) rows[static_cast<size_t>(b * time + t)] = static_cast<int32_t>(b * capacity + first + t);
    }
    Tensor cached_keys = cache.keys(layer).reshaped({batch * capacity, kv_width});
    Tensor cached_values = cache.values(layer).reshaped({batch * capacity, kv_width});
    backend_.scatter_rows(k, rows, cached_keys);
    backend_.scatter_rows(v, rows, cached_values);
    cache.set_length(layer, first + time);
    backend_.windowed_attention(q_heads, cache.keys(layer), cache.values(layer), first, window, sinks, attended);
  }
  backend_.matmul_transposed(attended.reshaped({count, q_width}), w.o_proj, residual, true);
  if (experts_.adapters_enabled()) apply_lora(backend_, w.o_lora, attended.reshaped({count, q_width}), residual);
  if (config_.output_bias) backend_.add_bias(residual, w.o_bias);
}

MoeInput MoeTransformer::moe_input(int64_t layer, const ForwardState& state) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  const int64_t count = state.residual.dim(0);
  const Device device = backend_.device();
  MoeInput input{Tensor({count, config_.hidden_size}, device), Tensor()};
  backend_.rms_norm(state.residual, w.post_attention_norm, static_cast<float>(config_.rms_norm_eps), input.normed);
  if (!config_.is_moe_layer(layer)) return input;  // a dense layer has no router
  input.router_logits = Tensor({count, config_.num_experts}, device);
  backend_.matmul_transposed(input.normed, w.router, input.router_logits, false);
  if (experts_.adapters_enabled()) apply_lora(backend_, w.router_lora, input.normed, input.router_logits);
  if (w.router_bias.defined()) backend_.add_bias(input.router_logits, w.router_bias);
  return input;
}

namespace {

// The backend's form of the architecture's gate rule (model_config.hpp). all_experts_softmax
// keeps the probabilities the top-k read (masked or not, they are the full softmax's).
Backend::TopKGate top_k_gate(GateRule rule) {
  switch (rule) {
    case GateRule::all_experts_softmax: return Backend::TopKGate::probabilities;
    case GateRule::renormalised_top_k: return Backend::TopKGate::renormalised_probabilities;
    case GateRule::top_k_softmax: return Backend::TopKGate::softmax_of_chosen_logits;
  }
  TEMOE_FAIL("unknown gate rule " << static_cast<int>(rule));
}

}  // namespace

void MoeTransformer::dense_mlp(int64_t layer, ForwardState& state, const MoeInput& input) {
  const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
  Tensor output(state.residual.shape(), backend_.device());
  apply_ffn(backend_, w.dense_mlp, input.normed, output, {}, experts_.adapters_enabled());
  backend_.add_in_place(state.residual, output);
}

void MoeTransformer::moe(int64_t layer, ForwardState& state, const MoeInput& input, const std::vector<uint8_t>* held_masks,
                         RouterRecord* record) {
  if (!config_.is_moe_layer(layer)) {
    TEMOE_CHECK(held_masks == nullptr, "moe: layer " << layer << " is a dense layer (mlp_only_layers / decoder_sparse_step); "
                                                     "it has no router, so no mask applies to it");
    dense_mlp(layer, state, input);
    return;
  }
  const std::span<const uint8_t> allowed_experts = held_masks ? std::span<const uint8_t>(*held_masks) : std::span<const uint8_t>();
  const int64_t count = state.residual.dim(0), width = config_.hidden_size, top_k = config_.top_k;
  const int64_t experts = config_.num_experts;
  const Device device = backend_.device();
  const GateRule rule = config_.gate_rule();
  Tensor probabilities = input.router_logits.clone();
  backend_.softmax_rows(probabilities);
  std::vector<int32_t> chosen(static_cast<size_t>(count * top_k));
  Tensor gate_weights({count, top_k}, device);
  if (held_masks) {
    // Inside a held mask the k experts are the top-k of the logits the mask allows; their gates
    // are what the architecture's rule gives those k (for OLMoE and Qwen without renormalisation,
    // the teacher's own probabilities: the mask is not a renormalisation).
    TEMOE_CHECK(static_cast<int64_t>(allowed_experts.size()) == count * experts,
                "moe: " << allowed_experts.size() << " mask flags for " << count << " tokens x " << experts << " experts");
    for (int64_t token = 0; token < count; ++token) {
      const auto row = allowed_experts.subspan(static_cast<size_t>(token * experts), static_cast<size_t>(experts));
      const auto allowed = std::count_if(row.begin(), row.end(), [](uint8_t flag) { return flag != 0; });
      TEMOE_CHECK(allowed >= top_k, "moe: token " << token << " may use only " << allowed << " experts, fewer than k = " << top_k);
    }
    Tensor masked_logits = input.router_logits.clone();
    backend_.mask_rows(masked_logits, allowed_experts);
    backend_.top_k_rows(masked_logits, static_cast<int>(top_k), chosen, gate_weights);
    backend_.top_k_gates(input.router_logits, probabilities, chosen, top_k_gate(rule), gate_weights);
  } else {
    backend_.top_k_rows(probabilities, static_cast<int>(top_k), chosen, gate_weights);
    if (rule != GateRule::all_experts_softmax) {
      backend_.top_k_gates(input.router_logits, probabilities, chosen, top_k_gate(rule), gate_weights);
    }
  }
  // An exchange leaves the outputs grouped by the rank they came from; the combine reads them there
  // (CPU), which saves copying them all into slot order first.
  if (device == Device::cpu && experts_.run_to_rows(layer, input.normed, chosen, top_k, held_masks, slot_rows_)) {
    backend_.combine_slot_rows(slot_rows_.rows, slot_rows_.row_of_slot, gate_weights, state.residual, true);
  } else {
    // The slots are reused from layer to layer: a fresh buffer would be first touched inside the
    // expert exchange, one page fault per 4 KiB, which measured a large share of the exchange.
    if (!slots_workspace_.defined() || slots_workspace_.device() != device || slots_workspace_.dim(0) < count * top_k ||
        slots_workspace_.dim(1) != width) {
      slots_workspace_ = Tensor({std::max<int64_t>(count * top_k, 1), width}, device);
    }
    Tensor slots = slots_workspace_.rows(0, count * top_k);
    experts_.run(layer, input.normed, chosen, top_k, slots, held_masks);
    backend_.combine_slots(slots, gate_weights, state.residual, true);
  }
  if (config_.shared_expert_ffn_size > 0) {
    // Qwen2-MoE's shared expert runs on every token, on the rank that owns it, outside any mask.
    const LayerWeights& w = weights_.layers.at(static_cast<size_t>(layer));
    Tensor shared({count, width}, device), gate_logits({count, 1}, device);
    apply_ffn(backend_, w.shared_expert, input.normed, shared, {}, experts_.adapters_enabled());
    backend_.matmul_transposed(input.normed, w.shared_expert_gate, gate_logits, false);
    backend_.add_sigmoid_gated(gate_logits, shared, state.residual);
  }
  if (record) {
    record->probabilities = probabilities;
    record->chosen_experts = chosen;
    record->gate_weights = gate_weights;
  }
}

}  // namespace temoe
