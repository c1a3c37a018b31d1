// The CPU kernels of the architecture variants (cpu_backend_variants.cpp) against double loops
// written here, and their plain special cases against the plain kernels bit for bit.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/tensor/backend.hpp"

namespace temoe {
namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Tensor tensor(shape);
  CounterRandom random(seed, {});
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = static_cast<float>(scale * random.normal());
  return tensor;
}

TEST(VariantKernels, BiasClampedSwigluAndSigmoidGateMatchDoubleLoops) {
  auto backend = make_backend(Device::cpu);
  Tensor x = random_tensor({5, 7}, 1, 4.0), bias = random_tensor({7}, 2);
  Tensor with_bias = x.clone();
  backend->add_bias(with_bias, bias);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(with_bias.data()[i], x.data()[i] + bias.data()[i % 7]);

  Tensor gate = random_tensor({5, 7}, 3, 4.0), up = random_tensor({5, 7}, 4, 4.0), out({5, 7});
  backend->clamped_swiglu(gate, up, 2.0f, 1.702f, out);
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double g = std::min(double(gate.data()[i]), 2.0), u = std::clamp(double(up.data()[i]), -2.0, 2.0);
    EXPECT_NEAR(out.data()[i], (u + 1.0) * g / (1.0 + std::exp(-1.702 * g)), 1e-5) << i;
  }

  Tensor logits = random_tensor({5, 1}, 5), values = random_tensor({5, 7}, 6), sum = x.clone();
  backend->add_sigmoid_gated(logits, values, sum);
  for (int64_t r = 0; r < 5; ++r) {
    const double gate_value = 1.0 / (1.0 + std::exp(-double(logits.data()[r])));
    for (int64_t c = 0; c < 7; ++c) {
      EXPECT_NEAR(sum.data()[r * 7 + c], x.data()[r * 7 + c] + gate_value * values.data()[r * 7 + c], 1e-5);
    }
  }
}

TEST(VariantKernels, WindowedAttentionWithSinksMatchesADoubleLoop) {
  auto backend = make_backend(Device::cpu);
  const int64_t batch = 2, time = 9, heads = 4, kv_heads = 2, head_dim = 8, window = 3;
  Tensor q = random_tensor({batch, time, heads, head_dim}, 7), k = random_tensor({batch, time, kv_heads, head_dim}, 8),
         v = random_tensor({batch, time, kv_heads, head_dim}, 9), sinks = random_tensor({heads}, 10);
  Tensor out({batch, time, heads, head_dim});
  backend->windowed_attention(q, k, v, 0, window, &sinks, out);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t t = 0; t < time; ++t) {
        const int64_t kv = h / (heads / kv_heads), first = std::max<int64_t>(0, t - window + 1);
        std::vector<double> scores;
        double maximum = sinks.data()[h];
        for (int64_t j = first; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < head_dim; ++i) {
            dot += double(q.data()[((b * time + t) * heads + h) * head_dim + i]) * k.data()[((b * time + j) * kv_heads + kv) * head_dim + i];
          }
          scores.push_back(dot / std::sqrt(double(head_dim)));
          maximum = std::max(maximum, scores.back());
        }
        double total = std::exp(double(sinks.data()[h]) - maximum);
        for (double& s : scores) total += (s = std::exp(s - maximum));
        for (int64_t i = 0; i < head_dim; ++i) {
          double expected = 0;
          for (int64_t j = first; j <= t; ++j) {
            expected += scores[static_cast<size_t>(j - first)] / total * v.data()[((b * time + j) * kv_heads + kv) * head_dim + i];
          }
          EXPECT_NEAR(out.data()[((b * time + t) * heads + h) * head_dim + i], expected, 1e-5);
        }
      }
    }
  }
  // Without window and sinks it is causal attention itself, bit for bit.
  Tensor plain({batch, time, heads, head_dim}), variant({batch, time, heads, head_dim});
  backend->causal_attention(q, k, v, plain);
  backend->windowed_attention(q, k, v, 0, 0, nullptr, variant);
  EXPECT_EQ(plain.to_vector(), variant.to_vector());
}

TEST(VariantKernels, RotaryWithThePlainFrequenciesIsRotaryBitForBit) {
  auto backend = make_backend(Device::cpu);
  const int64_t head_dim = 16;
  Tensor x = random_tensor({2, 5, 3, head_dim}, 11), y = x.clone();
  std::vector<double> frequencies;
  for (int64_t i = 0; i < head_dim / 2; ++i) frequencies.push_back(1.0 / std::pow(1e4, double(2 * i) / double(head_dim)));
  backend->rotary_from(x, 1e4, 3);
  backend->rotary_with_frequencies(y, frequencies, 1.0, 3);
  EXPECT_EQ(x.to_vector(), y.to_vector());
  // A scale multiplies every rotated value.
  Tensor z = random_tensor({2, 5, 3, head_dim}, 11), w = z.clone();
  backend->rotary_with_frequencies(z, frequencies, 1.0, 0);
  backend->rotary_with_frequencies(w, frequencies, 2.0, 0);
  for (int64_t i = 0; i < z.numel(); ++i) EXPECT_NEAR(w.data()[i], 2.0f * z.data()[i], 1e-6);
  EXPECT_THROW(backend->rotary_with_frequencies(w, std::vector<double>(3, 1.0), 1.0, 0), Error);
}

}  // namespace
}  // namespace temoe
