#include "src/data/byte_corpus.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/core/sha256.hpp"

namespace temoe::data {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kByteVocabulary = 256;
constexpr int64_t kSplitResolution = 1000000;  // the split rule compares hash mod 10^6

struct TextFile {
  fs::path path;
  uint64_t hash = 0;
  std::string bytes;
  std::vector<int64_t> boundaries;  // chunk offsets [0, ..., size]
};

struct KindInputs {
  std::vector<TextFile> train, eval;
};

bool valid_kind_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The path a file is known by: absolute and lexically normal, symbolic links kept, so that the
// split does not depend on the working directory nor on how the caller spelled the path.
fs::path spelled_path(const fs::path& path) { return fs::absolute(path).lexically_normal(); }

std::string read_whole_file(const fs::path& path, const std::string& kind) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) TEMOE_FAIL("kind '" << kind << "': " << path.string() << ": cannot open for reading");
  std::string bytes((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  if (stream.bad()) TEMOE_FAIL("kind '" << kind << "': " << path.string() << ": read error");
  return bytes;
}

std::string joined_paths(const std::vector<fs::path>& paths) {
  std::string text;
  for (const auto& path : paths) text += (text.empty() ? "" : ", ") + path.string();
  return text;
}

// Tokens per topic segment of a split: a segment ends where the topic changes or a document ends.
double mean_segment_length(const TokenDataset& dataset) {
  int64_t segments = 0;
  for (int64_t document = 0; document < dataset.document_count(); ++document) {
    const int64_t begin = dataset.document_begin(document), end = begin + dataset.document_length(document);
    for (int64_t i = begin; i < end; ++i) segments += (i == begin || dataset.topics[i] != dataset.topics[i - 1]) ? 1 : 0;
  }
  return segments > 0 ? static_cast<double>(dataset.token_count()) / static_cast<double>(segments) : 0.0;
}

}  // namespace

void ByteCorpusOptions::validate() const {
  if (kinds.size() < 2) {
    TEMOE_FAIL("make-corpus: " << kinds.size() << " kind(s) given (--kind NAME=PATH): expected at least two, so that "
                               "domains can change inside a sequence");
  }
  std::set<std::string> names;
  for (const auto& kind : kinds) {
    if (!valid_kind_name(kind.name)) {
      TEMOE_FAIL("make-corpus: kind name '" << kind.name << "': expected lowercase letters, digits and '_'");
    }
    if (!names.insert(kind.name).second) TEMOE_FAIL("make-corpus: kind '" << kind.name << "' is named twice");
    if (kind.paths.empty()) TEMOE_FAIL("make-corpus: kind '" << kind.name << "' names no file or directory");
  }
  if (min_chunk_bytes < 1) TEMOE_FAIL("--min-chunk-bytes " << min_chunk_bytes << ": expected at least 1");
  if (max_chunk_bytes < min_chunk_bytes) {
    TEMOE_FAIL("--max-chunk-bytes " << max_chunk_bytes << ": expected at least --min-chunk-bytes (" << min_chunk_bytes
                                    << ")");
  }
  if (document_bytes < 2) TEMOE_FAIL("--document-bytes " << document_bytes << ": expected at least 2");
  if (!(eval_fraction > 0.0 && eval_fraction < 1.0)) {
    TEMOE_FAIL("--eval-fraction " << eval_fraction << ": expected a share of the files strictly between 0 and 1");
  }
}

nlohmann::json ByteCorpusOptions::to_json() const {
  // The paths themselves are left out: a kind may list thousands of files (launch/make_corpus.sh
  // passes package file lists), more than an HDF5 attribute holds; the counts and the input's
  // sha256 (ByteCorpus::to_json) identify the data.
  return {{"min_chunk_bytes", min_chunk_bytes},
          {"max_chunk_bytes", max_chunk_bytes},
          {"document_bytes", document_bytes},
          {"eval_fraction", eval_fraction},
          {"seed", seed}};
}

nlohmann::json ByteCorpus::to_json() const {
  nlohmann::json kind_list = nlohmann::json::array();
  for (const auto& kind : kinds) {
    kind_list.push_back({{"name", kind.name},
                         {"topic", kind.topic},
                         {"train_files", kind.train_files},
                         {"eval_files", kind.eval_files},
                         {"train_bytes", kind.train_bytes},
                         {"eval_bytes", kind.eval_bytes},
                         {"train_bytes_used", kind.train_bytes_used},
                         {"eval_bytes_used", kind.eval_bytes_used},
                         {"train_chunks", kind.train_chunks},
                         {"eval_chunks", kind.eval_chunks},
                         {"skipped_empty", kind.skipped_empty},
                         {"skipped_binary", kind.skipped_binary}});
  }
  return {{"name", "byte_corpus"},
          {"vocab_size", kByteVocabulary},
          {"options", options.to_json()},
          {"kinds", kind_list},
          {"input_files", input_files},
          {"input_sha256", input_sha256},
          {"train_tokens", train.token_count()},
          {"eval_tokens", eval.token_count()},
          {"train_mean_segment_length", mean_segment_length(train)},
          {"eval_mean_segment_length", mean_segment_length(eval)}};
}

uint64_t path_hash(const fs::path& path) {
  // FNV-1a over the spelled path, then SplitMix64 so that the low digits are well mixed.
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const unsigned char c : spelled_path(path).generic_string()) hash = (hash ^ c) * 0x100000001b3ull;
  return mix64(hash);
}

bool is_eval_file(const fs::path& path, double eval_fraction) {
  const auto threshold = static_cast<uint64_t>(std::llround(eval_fraction * static_cast<double>(kSplitResolution)));
  return path_hash(path) % static_cast<uint64_t>(kSplitResolution) < threshold;
}

std::vector<fs::path> list_kind_files(const CorpusKind& kind) {
  std::vector<fs::path> found;
  for (const auto& given : kind.paths) {
    std::error_code error;
    const auto status = fs::status(given, error);
    if (error || !fs::exists(status)) {
      TEMOE_FAIL("kind '" << kind.name << "': " << given.string() << ": no such file or directory");
    }
    if (fs::is_regular_file(status)) {
      found.push_back(spelled_path(given));
    } else if (fs::is_directory(status)) {
      try {
        for (const auto& entry : fs::recursive_directory_iterator(given, fs::directory_options::follow_directory_symlink)) {
          if (entry.is_regular_file()) found.push_back(spelled_path(entry.path()));
        }
      } catch (const fs::filesystem_error& failure) {  // an unreadable directory, a symbolic-link loop
        TEMOE_FAIL("kind '" << kind.name << "': " << given.string() << ": cannot list the directory: " << failure.what());
      }
    } else {
      TEMOE_FAIL("kind '" << kind.name << "': " << given.string() << ": expected a regular file or a directory");
    }
  }
  std::sort(found.begin(), found.end(),
            [](const fs::path& a, const fs::path& b) { return a.generic_string() < b.generic_string(); });
  found.erase(std::unique(found.begin(), found.end()), found.end());
  // The same file reached by two names (a symbolic link beside its target) is read once: the first
  // name in path order.
  std::set<fs::path> seen;
  std::vector<fs::path> files;
  for (const auto& path : found) {
    if (seen.insert(fs::canonical(path)).second) files.push_back(path);
  }
  return files;
}

std::vector<int64_t> chunk_boundaries(const std::string& bytes, uint64_t hash, const ByteCorpusOptions& options) {
  const auto size = static_cast<int64_t>(bytes.size());
  const int64_t minimum = options.min_chunk_bytes, maximum = options.max_chunk_bytes;
  std::vector<int64_t> boundaries{0};
  for (int64_t start = 0, chunk = 0; start < size; ++chunk) {
    CounterRandom random(options.seed, {hash, static_cast<uint64_t>(chunk)});
    const int64_t target = minimum + static_cast<int64_t>(random.next_u64() % static_cast<uint64_t>(maximum - minimum + 1));
    int64_t end = size;
    if (start + target < size) {
      end = -1;
      // The last newline that keeps the chunk within [minimum, target] bytes ...
      for (int64_t i = start + target - 1; i >= start + minimum - 1 && end < 0; --i) {
        if (bytes[static_cast<size_t>(i)] == '\n') end = i + 1;
      }
      // ... else the first one after the target, up to the maximum; else a hard cut.
      for (int64_t i = start + target; i < std::min(start + maximum, size) && end < 0; ++i) {
        if (bytes[static_cast<size_t>(i)] == '\n') end = i + 1;
      }
      if (end < 0) end = std::min(start + maximum, size);
    }
    if (size - end < minimum) end = size;  // a short rest joins this chunk
    boundaries.push_back(end);
    start = end;
  }
  return boundaries;
}

void add_kind_argument(std::vector<CorpusKind>& kinds, const std::string& argument) {
  const auto equals = argument.find('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == argument.size()) {
    TEMOE_FAIL("--kind '" << argument << "': expected NAME=PATH (a file, a directory, or @LIST of paths)");
  }
  const std::string name = argument.substr(0, equals), value = argument.substr(equals + 1);
  if (!valid_kind_name(name)) TEMOE_FAIL("--kind '" << argument << "': kind name '" << name << "': expected lowercase letters, digits and '_'");
  auto kind = std::find_if(kinds.begin(), kinds.end(), [&](const CorpusKind& k) { return k.name == name; });
  if (kind == kinds.end()) {
    kinds.push_back({name, {}});
    kind = std::prev(kinds.end());
  }
  if (value[0] != '@') {
    kind->paths.emplace_back(value);
    return;
  }
  const fs::path list = value.substr(1);
  std::ifstream stream(list);
  if (!stream) TEMOE_FAIL("--kind '" << argument << "': list " << list.string() << ": cannot open for reading");
  std::string line;
  int64_t listed = 0;
  while (std::getline(stream, line)) {
    if (line.empty() || line[0] == '#') continue;
    const fs::path path = line;
    kind->paths.push_back(path.is_absolute() ? path : list.parent_path() / path);
    ++listed;
  }
  if (listed == 0) TEMOE_FAIL("--kind '" << argument << "': list " << list.string() << " names no path");
}

ByteCorpus build_byte_corpus(const ByteCorpusOptions& options) {
  options.validate();
  ByteCorpus corpus;
  corpus.options = options;
  std::vector<CorpusKind> kinds = options.kinds;
  std::sort(kinds.begin(), kinds.end(), [](const CorpusKind& a, const CorpusKind& b) { return a.name < b.name; });
  const auto kind_count = static_cast<int64_t>(kinds.size());

  Sha256 input_hash;
  std::vector<KindInputs> inputs(kinds.size());
  for (int64_t k = 0; k < kind_count; ++k) {
    const CorpusKind& kind = kinds[static_cast<size_t>(k)];
    CorpusKindStatistics statistics;
    statistics.name = kind.name;
    statistics.topic = k;
    for (const auto& path : list_kind_files(kind)) {
      TextFile file{path, path_hash(path), read_whole_file(path, kind.name), {}};
      if (file.bytes.empty()) {
        ++statistics.skipped_empty;
        continue;
      }
      if (file.bytes.find('\0') != std::string::npos) {
        ++statistics.skipped_binary;
        continue;
      }
      input_hash.update(std::span<const char>(file.bytes));
      ++corpus.input_files;
      file.boundaries = chunk_boundaries(file.bytes, file.hash, options);
      const bool eval = is_eval_file(path, options.eval_fraction);
      (eval ? statistics.eval_files : statistics.train_files) += 1;
      (eval ? statistics.eval_bytes : statistics.train_bytes) += static_cast<int64_t>(file.bytes.size());
      (eval ? inputs[static_cast<size_t>(k)].eval : inputs[static_cast<size_t>(k)].train).push_back(std::move(file));
    }
    if (statistics.train_files + statistics.eval_files == 0) {
      TEMOE_FAIL("kind '" << kind.name << "': no text files in " << joined_paths(kind.paths) << " ("
                          << statistics.skipped_empty << " empty and " << statistics.skipped_binary
                          << " holding NUL bytes skipped)");
    }
    if (statistics.train_files == 0 || statistics.eval_files == 0) {
      TEMOE_FAIL("kind '" << kind.name << "': all " << statistics.train_files + statistics.eval_files
                          << " text files fall in the " << (statistics.eval_files == 0 ? "training" : "evaluation")
                          << " split at --eval-fraction " << options.eval_fraction
                          << " (the split is by a hash of each file's path): add files to the kind or change --eval-fraction");
    }
    corpus.kinds.push_back(statistics);
  }
  corpus.input_sha256 = input_hash.hex_digest();

  for (const bool eval : {false, true}) {
    TokenDataset& dataset = eval ? corpus.eval : corpus.train;
    dataset.vocab_size = kByteVocabulary;
    dataset.topic_count = kind_count;
    // Each kind's queue: its files in an order shuffled by (seed, path), chunks in file order.
    struct Cursor {
      std::vector<const TextFile*> files;
      size_t file = 0, chunk = 0;
      bool done() const { return file >= files.size(); }
    };
    std::vector<Cursor> cursors(kinds.size());
    for (int64_t k = 0; k < kind_count; ++k) {
      auto& files = eval ? inputs[static_cast<size_t>(k)].eval : inputs[static_cast<size_t>(k)].train;
      for (const auto& file : files) cursors[static_cast<size_t>(k)].files.push_back(&file);
      std::sort(cursors[static_cast<size_t>(k)].files.begin(), cursors[static_cast<size_t>(k)].files.end(),
                [&](const TextFile* a, const TextFile* b) {
                  const uint64_t key_a = mix64(options.seed ^ a->hash), key_b = mix64(options.seed ^ b->hash);
                  return key_a != key_b ? key_a < key_b : a->path.generic_string() < b->path.generic_string();
                });
    }
    CounterRandom draws(options.seed, {eval ? 2u : 1u});
    int64_t previous = -1;
    while (true) {
      std::vector<int64_t> candidates;
      int64_t remaining = 0;
      for (int64_t k = 0; k < kind_count; ++k) {
        if (cursors[static_cast<size_t>(k)].done()) continue;
        ++remaining;
        if (k != previous) candidates.push_back(k);
      }
      if (remaining < 2) break;
      const int64_t k = candidates[draws.next_u64() % candidates.size()];
      Cursor& cursor = cursors[static_cast<size_t>(k)];
      const TextFile& file = *cursor.files[cursor.file];
      const int64_t begin = file.boundaries[cursor.chunk], end = file.boundaries[cursor.chunk + 1];
      for (int64_t i = begin; i < end; ++i) {
        dataset.tokens.push_back(static_cast<int32_t>(static_cast<unsigned char>(file.bytes[static_cast<size_t>(i)])));
      }
      dataset.topics.insert(dataset.topics.end(), static_cast<size_t>(end - begin), static_cast<int16_t>(k));
      CorpusKindStatistics& statistics = corpus.kinds[static_cast<size_t>(k)];
      (eval ? statistics.eval_bytes_used : statistics.train_bytes_used) += end - begin;
      (eval ? statistics.eval_chunks : statistics.train_chunks) += 1;
      if (++cursor.chunk + 1 >= file.boundaries.size()) {
        cursor.chunk = 0;
        ++cursor.file;
      }
      previous = k;
    }
    for (int64_t offset = 0; offset < dataset.token_count(); offset += options.document_bytes) {
      dataset.document_offsets.push_back(offset);
    }
    dataset.document_offsets.push_back(dataset.token_count());
    if (dataset.document_count() < 1) {
      TEMOE_FAIL("make-corpus: the " << (eval ? "evaluation" : "training") << " split packed no bytes");
    }
  }
  nlohmann::json generator = corpus.to_json();
  generator["split"] = "train";
  corpus.train.generator = generator.dump();
  generator["split"] = "eval";
  corpus.eval.generator = generator.dump();
  validate_token_dataset(corpus.train, "the training split of the byte corpus");
  validate_token_dataset(corpus.eval, "the evaluation split of the byte corpus");
  return corpus;
}

}  // namespace temoe::data
