#include "src/model/key_value_cache.hpp"

#include <limits>

#include "src/core/error.hpp"

namespace temoe {

KeyValueCache::KeyValueCache(const ModelConfig& config, int64_t batch, int64_t capacity, Device device)
    : batch_(batch), capacity_(capacity), lengths_(static_cast<size_t>(config.num_layers), 0) {
  TEMOE_CHECK(batch >= 0 && capacity >= 1, "KV cache: batch " << batch << " and capacity " << capacity
                                                             << " (expected batch >= 0 and capacity >= 1)");
  // Appending scatters rows b * capacity + t, and row indices are int32 (backend.hpp).
  TEMOE_CHECK(batch * capacity <= std::numeric_limits<int32_t>::max(),
              "KV cache: " << batch << " sequences x " << capacity << " positions exceed the int32 row indices");
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    keys_.emplace_back(Shape{batch, capacity, config.num_kv_heads, config.head_dim}, device);
    values_.emplace_back(Shape{batch, capacity, config.num_kv_heads, config.head_dim}, device);
  }
}

int64_t KeyValueCache::length() const {
  if (lengths_.empty()) return 0;
  for (size_t layer = 1; layer < lengths_.size(); ++layer) {
    TEMOE_CHECK(lengths_[layer] == lengths_[0], "KV cache: layer 0 holds " << lengths_[0] << " positions but layer "
                                                                          << layer << " holds " << lengths_[layer]
                                                                          << " (a chunk stopped part-way through the model)");
  }
  return lengths_[0];
}

void KeyValueCache::set_length(int64_t layer, int64_t length) {
  TEMOE_CHECK(length >= 0 && length <= capacity_,
              "KV cache: layer " << layer << " cannot hold " << length << " positions (capacity " << capacity_ << ")");
  lengths_.at(static_cast<size_t>(layer)) = length;
}

}  // namespace temoe
