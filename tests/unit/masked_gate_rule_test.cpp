// Held-mask gate semantics, for every gate rule: inside a mask the k experts are the top-k of the
// router logits the mask allows, and their gates are the architecture's own rule applied to those k
// (the full softmax for OLMoE / Qwen without renormalisation, i.e. the teacher's probabilities;
// renormalised over the k for Mixtral / norm_topk_prob; a softmax over the k chosen logits for
// gpt-oss). The expected values are computed here in double from the router logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "src/io/npy_file.hpp"
#include "src/model/moe_transformer.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

struct GateCase {
  const char* fixture;
  GateRule rule;
};

class MaskedGateRule : public ::testing::TestWithParam<GateCase> {};

// Expected (experts, gates) of one token from its logits and allowed flags.
std::pair<std::vector<int32_t>, std::vector<double>> expected_gates(GateRule rule, const float* logits, const uint8_t* allowed,
                                                                     int64_t experts, int64_t top_k) {
  std::vector<int32_t> order;
  for (int32_t e = 0; e < experts; ++e) {
    if (allowed[e]) order.push_back(e);
  }
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  order.resize(static_cast<size_t>(top_k));
  double maximum = -INFINITY;
  for (int64_t e = 0; e < experts; ++e) maximum = std::max(maximum, double(logits[e]));
  double all = 0;
  for (int64_t e = 0; e < experts; ++e) all += std::exp(double(logits[e]) - maximum);
  std::vector<double> gates;
  for (const int32_t e : order) gates.push_back(std::exp(double(logits[e]) - maximum) / all);  // teacher's probability
  if (rule != GateRule::all_experts_softmax) {
    // Renormalised over the k: for gpt-oss this is the softmax over the k chosen logits itself.
    const double chosen = std::accumulate(gates.begin(), gates.end(), 0.0);
    for (double& gate : gates) gate /= chosen;
  }
  return {order, gates};
}

TEST_P(MaskedGateRule, GatesFollowTheArchitecturesRuleInsideTheMask) {
  const auto directory = kFixtures / GetParam().fixture;
  const ModelConfig config = ModelConfig::from_file(directory / "config.json");
  ASSERT_EQ(config.gate_rule(), GetParam().rule);
  const SafetensorsCheckpoint checkpoint(directory);
  const ModelWeights weights = load_model_weights(checkpoint, config, {0, config.num_experts});
  auto backend = make_backend(Device::cpu);
  LocalExperts experts(*backend, weights);
  MoeTransformer model(config, weights, *backend, experts);
  const TokenArray tokens = read_token_npy(directory / "tokens.npy");
  const int64_t count = tokens.shape[0] * tokens.shape[1], e_count = config.num_experts, k = config.top_k;

  ForwardState state = model.begin(tokens.ids, tokens.shape[0], tokens.shape[1]);
  model.attention(0, state);
  const MoeInput input = model.moe_input(0, state);
  const float* logits = input.router_logits.data();

  // The unmasked gates: the teacher's.
  ForwardState teacher_state = state;
  teacher_state.residual = state.residual.clone();
  RouterRecord teacher;
  model.moe(0, teacher_state, input, nullptr, &teacher);

  // Two masks per token: one that drops the teacher's first choice (so routing and gates must
  // change) and one that holds the teacher's top-k plus one more (so they must not).
  for (const bool holds_teacher : {false, true}) {
    std::vector<uint8_t> allowed(static_cast<size_t>(count * e_count), 1);
    for (int64_t token = 0; token < count; ++token) {
      const int32_t* top = teacher.chosen_experts.data() + token * k;
      if (holds_teacher) {
        std::fill_n(allowed.begin() + token * e_count, e_count, 0);
        for (int64_t s = 0; s < k; ++s) allowed[static_cast<size_t>(token * e_count + top[s])] = 1;
        for (int64_t e = 0; e < e_count; ++e) {
          if (!allowed[static_cast<size_t>(token * e_count + e)]) {
            allowed[static_cast<size_t>(token * e_count + e)] = 1;
            break;
          }
        }
      } else {
        allowed[static_cast<size_t>(token * e_count + top[0])] = 0;
      }
    }
    ForwardState masked_state = state;
    masked_state.residual = state.residual.clone();
    RouterRecord record;
    model.moe(0, masked_state, input, &allowed, &record);
    for (int64_t token = 0; token < count; ++token) {
      const auto [ids, gates] = expected_gates(config.gate_rule(), logits + token * e_count,
                                               allowed.data() + token * e_count, e_count, k);
      for (int64_t s = 0; s < k; ++s) {
        ASSERT_EQ(record.chosen_experts[static_cast<size_t>(token * k + s)], ids[static_cast<size_t>(s)])
            << GetParam().fixture << " token " << token << " slot " << s;
        EXPECT_NEAR(record.gate_weights.data()[token * k + s], gates[static_cast<size_t>(s)], 1e-6)
            << GetParam().fixture << " token " << token << " slot " << s;
        if (holds_teacher) {
          // A mask holding the teacher's top-k reproduces the teacher's gates (no 1 / P(mask)).
          EXPECT_NEAR(record.gate_weights.data()[token * k + s], teacher.gate_weights.data()[token * k + s], 1e-6);
        }
      }
    }
    // The recorded probabilities are the full softmax, mask or not.
    EXPECT_EQ(record.probabilities.to_vector(), teacher.probabilities.to_vector());
  }
}

INSTANTIATE_TEST_SUITE_P(EveryRule, MaskedGateRule,
                         ::testing::Values(GateCase{"olmoe_f32_sharded", GateRule::all_experts_softmax},
                                           GateCase{"qwen2_moe_f32_sharded", GateRule::all_experts_softmax},
                                           GateCase{"mixtral_f32", GateRule::renormalised_top_k},
                                           GateCase{"qwen3_moe_f32", GateRule::renormalised_top_k},
                                           GateCase{"gpt_oss_f32", GateRule::top_k_softmax}),
                         [](const auto& test_case) { return std::string(test_case.param.fixture); });

}  // namespace
}  // namespace temoe
