#include "src/data/batch_sampler.hpp"

#include <algorithm>
#include <numeric>
#include <utility>
#include <string>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/data/uniform_index.hpp"

namespace temoe::data {

namespace {

constexpr uint64_t kEpochOrderStream = 0x65706f63686f7264ull;  // "epochord"

std::string origin_of(const TokenDataset& dataset) {
  return dataset.path.empty() ? std::string("token data (in memory)") : dataset.path.string();
}

}  // namespace

TokenArray SequenceBatch::token_array() const { return TokenArray{{batch, time}, tokens}; }

SequenceRange data_parallel_slice(int64_t global_batch, int64_t rank, int64_t ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    TEMOE_FAIL("data-parallel rank " << rank << " of " << ranks << ": expected 0 <= rank < ranks");
  }
  if (global_batch < 1 || global_batch % ranks != 0) {
    TEMOE_FAIL("global batch of " << global_batch << " sequences does not split evenly over " << ranks
                                  << " data-parallel ranks");
  }
  const int64_t per_rank = global_batch / ranks;
  return {rank * per_rank, per_rank};
}

BatchSampler::BatchSampler(const TokenDataset& dataset, const SamplerOptions& options)
    : dataset_(dataset), options_(options) {
  const int64_t time = options_.sequence_length;
  if (time < 1) TEMOE_FAIL("sequence length " << time << ": expected at least 1 token");
  int64_t longest = 0;
  for (int64_t document = 0; document < dataset_.document_count(); ++document) {
    const int64_t length = dataset_.document_length(document);
    longest = std::max(longest, length);
    if (length < time + 1) {
      ++skipped_documents_;
      continue;
    }
    int64_t start = 0;
    for (; start + time + 1 <= length; start += time) {
      window_document_.push_back(document);
      window_start_.push_back(start);
    }
    const int64_t last_start = start - time;  // the last window that fitted
    if (options_.cover_document_ends && last_start + time + 1 != length) {
      window_document_.push_back(document);
      window_start_.push_back(length - time - 1);
    }
  }
  if (window_document_.empty()) {
    TEMOE_FAIL(origin_of(dataset_) << ": no document has the " << time + 1 << " tokens a training sequence of "
                                   << time << " needs (sequence length + 1 for the targets; the longest document has "
                                   << longest << ")");
  }
}

const std::vector<int64_t>& BatchSampler::permutation(int64_t epoch) {
  for (const auto& cached : cache_) {
    if (cached.epoch == epoch) return cached.windows;
  }
  CachedPermutation& slot = cache_[next_cache_slot_];
  next_cache_slot_ = 1 - next_cache_slot_;
  slot.epoch = epoch;
  slot.windows.resize(window_document_.size());
  std::iota(slot.windows.begin(), slot.windows.end(), int64_t{0});
  // Fisher-Yates, keyed by (seed, epoch) only.
  CounterRandom random(options_.seed, {kEpochOrderStream, static_cast<uint64_t>(epoch)});
  for (size_t index = slot.windows.size() - 1; index > 0; --index) {
    std::swap(slot.windows[index], slot.windows[uniform_index(random, index + 1)]);
  }
  return slot.windows;
}

int64_t BatchSampler::window_at(int64_t epoch, int64_t position) {
  TEMOE_CHECK(epoch >= 0 && position >= 0 && position < window_count(),
              "window_at(" << epoch << ", " << position << "): expected epoch >= 0 and 0 <= position < "
                           << window_count());
  return permutation(epoch)[position];
}

SequenceBatch BatchSampler::batch(int64_t step, int64_t global_batch, int64_t first, int64_t count) {
  if (step < 0 || global_batch < 1 || first < 0 || count < 0 || first + count > global_batch) {
    TEMOE_FAIL("batch(step " << step << ", global batch " << global_batch << ", sequences [" << first << ", "
                             << first + count << ")): expected step >= 0, global batch >= 1 and "
                             << "0 <= first <= first + count <= global batch");
  }
  return sequences(step * global_batch + first, count);
}

SequenceBatch BatchSampler::sequences(int64_t first_global_index, int64_t count) {
  TEMOE_CHECK(first_global_index >= 0 && count >= 0,
              "sequences(" << first_global_index << ", " << count << "): expected non-negative values");
  const int64_t time = options_.sequence_length, windows = window_count();
  SequenceBatch out;
  out.batch = count;
  out.time = time;
  const auto cells = static_cast<size_t>(count * time);
  out.tokens.resize(cells);
  out.targets.resize(cells);
  out.topics.assign(cells, int16_t{-1});
  out.document_ends.assign(cells, uint8_t{0});
  out.truncated.assign(cells, uint8_t{0});
  for (int64_t row = 0; row < count; ++row) {
    const int64_t global = first_global_index + row;
    const int64_t epoch = global / windows, position = global % windows;
    const int64_t window = permutation(epoch)[position];
    const int64_t document = window_document_[window], start = window_start_[window];
    const int64_t begin = dataset_.document_begin(document) + start;
    const size_t base = static_cast<size_t>(row * time);
    for (int64_t t = 0; t < time; ++t) {
      out.tokens[base + t] = dataset_.tokens[begin + t];
      out.targets[base + t] = dataset_.tokens[begin + t + 1];
      if (dataset_.has_topics()) out.topics[base + t] = dataset_.topics[begin + t];
    }
    const bool ends_document = start + time + 1 == dataset_.document_length(document);
    (ends_document ? out.document_ends : out.truncated)[base + time - 1] = 1;
    out.global_index.push_back(global);
    out.epoch.push_back(epoch);
    out.position.push_back(position);
    out.window.push_back(window);
    out.document.push_back(document);
    out.start.push_back(start);
  }
  return out;
}

}  // namespace temoe::data
