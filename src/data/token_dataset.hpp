#pragma once
// Pre-tokenized training data with document boundaries, and its HDF5 file format (DESIGN.md
// section 4). One file holds:
//   /tokens            int32 [N]      the token ids of all documents, back to back
//   /document_offsets  int64 [D + 1]  document d is tokens [offsets[d], offsets[d + 1]);
//                                     offsets[0] = 0, strictly increasing, offsets[D] = N
//   /topics            int16 [N]      optional: the hidden topic of every token (synthetic data),
//                                     in [0, topic_count)
// and attributes on the root group:
//   format_version  int64   kTokenDataFormatVersion (checked on read)
//   vocab_size      int64   every token id is in [0, vocab_size)
//   topic_count     int64   present when /topics is
//   generator       string  optional: JSON describing how the data were made (parameters, seeds)
// The file is written atomically and without timestamps, so the same content gives the same bytes.
// h5py: f = h5py.File(path); f["tokens"][:], f.attrs["vocab_size"], json.loads(f.attrs["generator"]).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace temoe::data {

inline constexpr int64_t kTokenDataFormatVersion = 1;

struct TokenDataset {
  std::filesystem::path path;             // the file it was read from; empty when built in memory
  int64_t vocab_size = 0;
  int64_t topic_count = 0;                // 0 when the data carry no topic labels
  std::vector<int32_t> tokens;            // [N]
  std::vector<int16_t> topics;            // [N], or empty (no topic labels)
  std::vector<int64_t> document_offsets;  // [D + 1]
  std::string generator = "{}";           // JSON text

  int64_t token_count() const { return static_cast<int64_t>(tokens.size()); }
  int64_t document_count() const { return static_cast<int64_t>(document_offsets.size()) - 1; }
  int64_t document_begin(int64_t document) const { return document_offsets[document]; }
  int64_t document_length(int64_t document) const {
    return document_offsets[document + 1] - document_offsets[document];
  }
  bool has_topics() const { return !topics.empty(); }
};

// Throws temoe::Error naming `origin` (a file name) and the first thing wrong: no documents,
// offsets not starting at 0, not strictly increasing, not ending at the token count, token ids
// outside [0, vocab_size), topic labels of the wrong length or outside [0, topic_count).
void validate_token_dataset(const TokenDataset& dataset, const std::string& origin);

// Validates, then writes `dataset` to `path` atomically: a temporary file beside it is written,
// flushed, closed and fsync'ed, then renamed over `path`.
void write_token_dataset(const std::filesystem::path& path, const TokenDataset& dataset);

// Reads and validates a token-data file. Refusals name the file and what is wrong: missing file,
// not HDF5, unsupported format_version, missing attribute or dataset, wrong dtype or shape, and
// everything validate_token_dataset checks. The whole file is read into memory (6 bytes a token).
TokenDataset read_token_dataset(const std::filesystem::path& path);

}  // namespace temoe::data
