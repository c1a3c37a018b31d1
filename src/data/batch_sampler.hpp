#pragma once
// Training sequences from token data: windows of T tokens inside one document, in an order that
// depends only on (seed, epoch), never on which rank asks (issue 4, point 7).
//
// Windows. A window starting at offset s of a document of length L covers the input tokens
// [s, s + T) and the targets [s + 1, s + T + 1) (the token after each position), so it needs
// s + T + 1 <= L. Each document contributes the windows at s = 0, T, 2T, ... that fit and, when
// cover_document_ends is set and the last of them does not end exactly at the document end, one
// more window at s = L - T - 1 (overlapping the previous one), so that every token is a target and
// the document's end is seen. Documents shorter than T + 1 tokens give no window and are skipped
// (skipped_documents() counts them). Windows are numbered in document order, then by offset:
// window w in [0, window_count()).
//
// Order. The endless stream of training sequences is epoch 0, epoch 1, ...; epoch e is a
// permutation of all windows keyed by CounterRandom(seed, e). Global sequence index g is position
// p = g mod W of epoch e = g / W (W = window_count()), so every window is seen exactly once per
// epoch and an epoch ends when its windows are exhausted (a step's batch may straddle two epochs).
// Step s of a run with global batch size B_global holds the global indices
// [s * B_global, (s + 1) * B_global); a data-parallel rank asks for its slice [first, first + count)
// of that, so 2 ranks with B each see exactly what 1 rank with 2B sees. To resume, a run only needs
// its step (or the next global index); each sequence also carries its (epoch, position).
//
// Flags per position t (for GAE: 0 at the end of a document, bootstrap at a length limit):
// document_ends[t] is 1 where the next state would cross a document boundary, that is, only at
// t = T - 1 of a window whose last target is the document's last token; truncated[t] is 1 at
// t = T - 1 of every other window (cut by the length limit). Elsewhere both are 0.
//
// Not thread-safe: a sampler caches the permutations of the epochs it last served.
#include <cstdint>
#include <vector>

#include "src/data/token_dataset.hpp"
#include "src/io/npy_file.hpp"

namespace temoe::data {

struct SamplerOptions {
  int64_t sequence_length = 128;    // T: tokens per training sequence
  uint64_t seed = 1;                // names the order of the windows in every epoch
  bool cover_document_ends = true;  // add a window ending at each document's end (see above)
};

// Sequences [first, first + count) of the stream, row-major [batch, time] arrays.
struct SequenceBatch {
  int64_t batch = 0;                   // sequences
  int64_t time = 0;                    // T
  std::vector<int32_t> tokens;         // [batch, time] inputs
  std::vector<int32_t> targets;        // [batch, time] the token after each input
  std::vector<int16_t> topics;         // [batch, time] hidden topic of each input; -1 without labels
  std::vector<uint8_t> document_ends;  // [batch, time]
  std::vector<uint8_t> truncated;      // [batch, time]
  std::vector<int64_t> global_index;   // [batch] index in the endless stream
  std::vector<int64_t> epoch;          // [batch]
  std::vector<int64_t> position;       // [batch] in the epoch's permutation
  std::vector<int64_t> window;         // [batch] window number
  std::vector<int64_t> document;       // [batch] document index in the dataset
  std::vector<int64_t> start;          // [batch] offset of the first input token in its document

  // The inputs as the model's [batch, time] token array.
  TokenArray token_array() const;
};

struct SequenceRange {
  int64_t first = 0;
  int64_t count = 0;
};

// Rank `rank` of `ranks` data-parallel ranks takes the contiguous slice of a global batch:
// [rank * B, (rank + 1) * B) with B = global_batch / ranks (which must divide evenly).
SequenceRange data_parallel_slice(int64_t global_batch, int64_t rank, int64_t ranks);

class BatchSampler {
 public:
  // `dataset` must outlive the sampler. Fails, naming the dataset's file, when no document has
  // the T + 1 tokens a window needs.
  BatchSampler(const TokenDataset& dataset, const SamplerOptions& options);

  int64_t sequence_length() const { return options_.sequence_length; }
  int64_t window_count() const { return static_cast<int64_t>(window_document_.size()); }
  int64_t skipped_documents() const { return skipped_documents_; }
  // Window w's document and the offset in it of its first input token.
  int64_t window_document(int64_t window) const { return window_document_[window]; }
  int64_t window_start(int64_t window) const { return window_start_[window]; }
  // The window at `position` of epoch `epoch`'s permutation.
  int64_t window_at(int64_t epoch, int64_t position);

  // Sequences [first, first + count) of step `step`'s global batch of `global_batch` sequences,
  // that is global indices step * global_batch + [first, first + count).
  SequenceBatch batch(int64_t step, int64_t global_batch, int64_t first, int64_t count);
  // Global indices [first_global_index, first_global_index + count).
  SequenceBatch sequences(int64_t first_global_index, int64_t count);

 private:
  const std::vector<int64_t>& permutation(int64_t epoch);

  const TokenDataset& dataset_;
  SamplerOptions options_;
  std::vector<int64_t> window_document_;  // [W]
  std::vector<int64_t> window_start_;     // [W]
  int64_t skipped_documents_ = 0;
  // The last two epochs' permutations (a batch can straddle an epoch boundary).
  struct CachedPermutation {
    int64_t epoch = -1;
    std::vector<int64_t> windows;
  };
  CachedPermutation cache_[2];
  int next_cache_slot_ = 0;
};

}  // namespace temoe::data
