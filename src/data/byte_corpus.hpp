#pragma once
// A byte-level corpus of real text files grouped by kind (Python sources, C headers, English
// documentation, ...), packed so that domains change inside a training sequence (issue 15 part 3):
// the headline testbed, where an expert set held for a whole sequence is a real constraint.
//
// Inputs. Each kind names files and directories (walked recursively; only regular files, symbolic
// links followed, the same file reached twice taken once). Within a kind the files are sorted by
// path, so the inputs' order never depends on the file system's. Empty files and files holding a
// NUL byte (not text) are skipped and counted.
//
// Split. A file is in the evaluation split when hash(path) mod 10^6 < eval_fraction * 10^6
// (SplitMix64 of its path string; no seed), so a file's side never depends on the other inputs and
// evaluation text is never seen in training. Each kind must have a file on each side.
//
// Chunks. Every file is cut into chunks at line boundaries: a chunk starting at byte p draws a
// target length in [min_chunk_bytes, max_chunk_bytes] (CounterRandom keyed by (seed, path hash,
// chunk number)) and ends after the last newline at or before p + target that leaves at least
// min_chunk_bytes, else after the first newline past that, else at p + max_chunk_bytes (a line too
// long). A rest shorter than min_chunk_bytes joins the chunk before it, so a domain lasts at least
// min_chunk_bytes (files shorter than that are one chunk).
//
// Packing. Per split, each kind's chunks queue up file after file (files in an order shuffled by
// (seed, path hash), chunks in file order). The stream takes the next chunk of a kind drawn
// uniformly among the kinds that still have chunks, other than the previous chunk's kind, and stops
// when fewer than two kinds have chunks left (the rest is counted as unused). The stream is cut into
// documents of document_bytes tokens (the last one may be shorter). Tokens are the bytes (vocabulary
// 256); the topic of every token is the index of its kind in name order.
//
// Determinism: the same files (paths and contents) and options give identical datasets, so the
// HDF5 files written from them are identical bytes.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/data/token_dataset.hpp"

namespace temoe::data {

struct CorpusKind {
  std::string name;                         // [a-z0-9_]+, e.g. "python"
  std::vector<std::filesystem::path> paths;  // files and directories
};

struct ByteCorpusOptions {
  std::vector<CorpusKind> kinds;   // at least two, distinct names
  int64_t min_chunk_bytes = 192;   // shortest domain segment (but for files shorter than this)
  int64_t max_chunk_bytes = 768;   // longest chunk target; a chunk can reach max + min - 1
  int64_t document_bytes = 4096;   // tokens per document
  double eval_fraction = 0.1;      // share of files (by path hash) in the evaluation split, in (0, 1)
  uint64_t seed = 1;               // names the chunk lengths, the file order and the kind draws

  // Throws temoe::Error naming the option (by its make-corpus flag) that is out of range.
  void validate() const;
  nlohmann::json to_json() const;
};

struct CorpusKindStatistics {
  std::string name;
  int64_t topic = 0;
  int64_t train_files = 0, eval_files = 0;
  int64_t train_bytes = 0, eval_bytes = 0;                // bytes of the split's files
  int64_t train_bytes_used = 0, eval_bytes_used = 0;      // bytes packed into the split's documents
  int64_t train_chunks = 0, eval_chunks = 0;              // chunks packed
  int64_t skipped_empty = 0, skipped_binary = 0;          // files left out
};

struct ByteCorpus {
  TokenDataset train, eval;  // generator: to_json() of this corpus plus "split"
  std::vector<CorpusKindStatistics> kinds;  // in name (topic) order
  std::string input_sha256;  // of every used input file's bytes, concatenated in kind-name order,
                             // then path order within a kind (`cat FILES | sha256sum`)
  int64_t input_files = 0;
  ByteCorpusOptions options;

  // Options, per-kind counts, input_sha256 and the mean segment length of each split.
  nlohmann::json to_json() const;
};

// The files of one kind as read: sorted by path, duplicates (same canonical path) once. Throws
// temoe::Error naming the kind and the path when a path does not exist or is neither a file nor a
// directory.
std::vector<std::filesystem::path> list_kind_files(const CorpusKind& kind);

// Reads, splits, chunks and packs. Throws temoe::Error naming the kind, the path and what was
// expected: a missing path, a kind with no text files, a kind with no file on one side of the split,
// a file that cannot be read.
ByteCorpus build_byte_corpus(const ByteCorpusOptions& options);

// Whether the file `path` is on the evaluation side of the split (the rule above).
bool is_eval_file(const std::filesystem::path& path, double eval_fraction);

// The chunk boundaries of one file's bytes under the rule above: offsets [0, ..., size].
std::vector<int64_t> chunk_boundaries(const std::string& bytes, uint64_t path_hash, const ByteCorpusOptions& options);

// The path's hash used for the split, the chunk lengths and the file order.
uint64_t path_hash(const std::filesystem::path& path);

// Parses "NAME=PATH" (a kind flag of temoe make-corpus): PATH is a file, a directory or @LIST (a
// text file of paths, one a line; blank lines and lines starting with # ignored, relative paths
// relative to the list's directory). Appends to the kind of that name in `kinds`, or adds one.
void add_kind_argument(std::vector<CorpusKind>& kinds, const std::string& argument);

}  // namespace temoe::data
