#include "src/checkpoint/synthetic_checkpoint.hpp"

#include <algorithm>
#include <string>

#include "src/core/error.hpp"

namespace temoe {

namespace {

constexpr int64_t kColumns = 256;
constexpr int kMaxParameters = 8;

float synthetic_value(int64_t step, size_t parameter, int64_t index) {
  return static_cast<float>(step) + static_cast<float>(parameter) + static_cast<float>(index % 251) * 0.5f;
}

std::string synthetic_metrics(int64_t step) { return "{\"step\": " + std::to_string(step) + ", \"synthetic\": true}"; }

RankState synthetic_rank(int64_t step, int rank) {
  const auto s = static_cast<uint64_t>(step);
  return {{s * 3 + 1, s ^ 0x9E3779B97F4A7C15ull, static_cast<uint64_t>(rank)}, {step * 10, rank, -1}};
}

}  // namespace

Checkpoint make_synthetic_checkpoint(int64_t step, int64_t tensor_bytes) {
  TEMOE_CHECK(step >= 0 && tensor_bytes >= 0, "make_synthetic_checkpoint: negative step or size");
  // Three float32 tensors (value, exp_avg, exp_avg_sq) per parameter.
  const int64_t elements = std::max<int64_t>(1, tensor_bytes / 12);
  const int64_t rows_total = std::max<int64_t>(1, (elements + kColumns - 1) / kColumns);
  const int parameters = static_cast<int>(std::min<int64_t>(kMaxParameters, rows_total));
  Checkpoint checkpoint;
  checkpoint.config = "[train]\nsteps = 1000000\n# synthetic checkpoint\n";
  checkpoint.model = {"synthetic", fingerprint_weights({{"synthetic", {kColumns}}})};
  checkpoint.step = step;
  checkpoint.tokens = step * 4096;
  checkpoint.metrics = synthetic_metrics(step);
  checkpoint.ranks = {synthetic_rank(step, 0), synthetic_rank(step, 1)};
  ParameterSetState set;
  set.name = "controller";
  set.has_optimizer = true;
  set.optimizer_step = step;
  for (int p = 0; p < parameters; ++p) {
    const int64_t rows = rows_total / parameters + (p < rows_total % parameters ? 1 : 0);
    Tensor value({rows, kColumns}), first({rows, kColumns}), second({rows, kColumns});
    for (int64_t i = 0; i < value.numel(); ++i) {
      const float x = synthetic_value(step, static_cast<size_t>(p), i);
      value.data()[i] = x;
      first.data()[i] = -x;
      second.data()[i] = 2.0f * x;
    }
    set.parameter_names.push_back("layer" + std::to_string(p) + ".weight");
    set.values.push_back(value);
    set.first_moments.push_back(first);
    set.second_moments.push_back(second);
  }
  checkpoint.parameter_sets.push_back(std::move(set));
  return checkpoint;
}

void verify_synthetic_checkpoint(const Checkpoint& checkpoint) {
  const int64_t step = checkpoint.step;
  const std::string where = checkpoint.source.string() + " (step " + std::to_string(step) + ")";
  TEMOE_CHECK(checkpoint.metrics == synthetic_metrics(step), where << ": metrics '" << checkpoint.metrics << "'");
  TEMOE_CHECK(checkpoint.tokens == step * 4096, where << ": tokens " << checkpoint.tokens);
  TEMOE_CHECK(checkpoint.world_size() == 2 && checkpoint.ranks[0] == synthetic_rank(step, 0) &&
                  checkpoint.ranks[1] == synthetic_rank(step, 1),
              where << ": rank states differ");
  const ParameterSetState& set = checkpoint.parameter_set("controller");
  TEMOE_CHECK(set.has_optimizer && set.optimizer_step == step, where << ": optimizer step " << set.optimizer_step);
  for (size_t p = 0; p < set.values.size(); ++p) {
    for (int64_t i = 0; i < set.values[p].numel(); ++i) {
      const float x = synthetic_value(step, p, i);
      TEMOE_CHECK(set.values[p].data()[i] == x && set.first_moments[p].data()[i] == -x &&
                      set.second_moments[p].data()[i] == 2.0f * x,
                  where << ": parameter " << set.parameter_names[p] << " element " << i << " differs");
    }
  }
}

int64_t checkpoint_tensor_bytes(const Checkpoint& checkpoint) {
  int64_t bytes = 0;
  for (const auto& set : checkpoint.parameter_sets) {
    for (const auto& tensor : set.values) bytes += tensor.numel() * 4;
    for (const auto& tensor : set.first_moments) bytes += tensor.numel() * 4;
    for (const auto& tensor : set.second_moments) bytes += tensor.numel() * 4;
  }
  return bytes;
}

}  // namespace temoe
