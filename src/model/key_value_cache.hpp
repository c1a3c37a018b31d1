#pragma once
// The keys (after rotary) and values of every layer of a batch of sequences, for incremental
// decoding: a sequence's first positions are run once (a prefill) and every later position
// attends to what the cache holds instead of recomputing it.
#include <cstdint>
#include <vector>

#include "src/model/model_config.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

class KeyValueCache {
 public:
  // Room for `capacity` positions of `batch` sequences in every layer of `config`.
  KeyValueCache(const ModelConfig& config, int64_t batch, int64_t capacity, Device device);

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t layers() const { return static_cast<int64_t>(lengths_.size()); }

  // Positions [0, length) of every sequence are filled. Every layer must hold the same number:
  // throws, naming the layers, when a chunk stopped part-way through the model.
  int64_t length() const;
  int64_t length(int64_t layer) const { return lengths_.at(static_cast<size_t>(layer)); }

  Tensor& keys(int64_t layer) { return keys_.at(static_cast<size_t>(layer)); }      // [B, C, KV, hd]
  Tensor& values(int64_t layer) { return values_.at(static_cast<size_t>(layer)); }  // [B, C, KV, hd]

  // Layer `layer` now holds positions up to `length` (called by the attention that wrote them).
  void set_length(int64_t layer, int64_t length);

 private:
  int64_t batch_;
  int64_t capacity_;
  std::vector<Tensor> keys_;
  std::vector<Tensor> values_;
  std::vector<int64_t> lengths_;
};

}  // namespace temoe
