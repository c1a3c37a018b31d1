// The byte corpus (src/data/byte_corpus.hpp): chunks cut at line ends within their bounds, topics
// that are the kinds of the bytes, domains that change at every chunk, a split by file that never
// lets an evaluation file into training, identical bytes for the same inputs in any order, and
// refusals that name the kind and the path. Also `temoe make-corpus` itself, once.
#include "src/data/byte_corpus.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "src/core/sha256.hpp"
#include "src/data/token_dataset.hpp"
#include "tests/support/error_message.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/support/shell_command.hpp"

namespace temoe::data {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::expect_contains;

void write_file(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

// Lines of `length` bytes (newline included) of one letter `letter`, with the file's marker (a
// byte in 'A'..'Z' standing for the file) first on every line, so that every byte tells its kind
// and every line its file.
std::string file_text(char letter, char marker, int lines, int length) {
  std::string text;
  for (int line = 0; line < lines; ++line) {
    text.push_back(marker);
    text.append(static_cast<size_t>(length - 2), letter);
    text.push_back('\n');
  }
  return text;
}

class ByteCorpusTest : public testing::ScratchDirectoryTest {
 protected:
  // Three kinds ("code" letters c, "doc" letters d, "header" letters h) of `files` files each in
  // their own directory, named so that at eval fraction 0.5 each kind has files on both sides.
  ByteCorpusOptions three_kinds(int files = 6) {
    ByteCorpusOptions options;
    options.min_chunk_bytes = 40;
    options.max_chunk_bytes = 120;
    options.document_bytes = 500;
    options.eval_fraction = 0.5;
    const std::string names[3] = {"header", "code", "doc"};  // not in name order: topics follow names
    const char letters[3] = {'h', 'c', 'd'};
    char marker = 'A';
    for (int k = 0; k < 3; ++k) {
      const fs::path root = directory_ / names[k];
      int train = 0, eval = 0;
      for (int candidate = 0; train + eval < files; ++candidate) {
        const fs::path path = root / ("f" + std::to_string(candidate) + ".txt");
        const bool on_eval = is_eval_file(path, options.eval_fraction);
        // Keep both sides populated: at most files - 1 on either side.
        if ((on_eval && eval == files - 1) || (!on_eval && train == files - 1)) continue;
        (on_eval ? eval : train) += 1;
        write_file(path, file_text(letters[k], marker, 8 + 3 * candidate % 7, 10 + 7 * candidate % 13));
        markers_[marker] = {names[k], on_eval};
        ++marker;
      }
      options.kinds.push_back({names[k], {root}});
    }
    return options;
  }

  struct FileFacts {
    std::string kind;
    bool eval = false;
  };
  std::map<char, FileFacts> markers_;
};

TEST_F(ByteCorpusTest, ChunksEndAtLineEndsWithinTheirBounds) {
  ByteCorpusOptions options;
  options.min_chunk_bytes = 30;
  options.max_chunk_bytes = 80;
  std::string text;
  for (int line = 0; line < 200; ++line) text += std::string(static_cast<size_t>(3 + line * 5 % 17), 'x') + "\n";
  const auto boundaries = chunk_boundaries(text, 12345, options);
  ASSERT_GE(boundaries.size(), 3u);
  EXPECT_EQ(boundaries.front(), 0);
  EXPECT_EQ(boundaries.back(), static_cast<int64_t>(text.size()));
  std::set<int64_t> lengths;
  for (size_t i = 1; i < boundaries.size(); ++i) {
    const int64_t length = boundaries[i] - boundaries[i - 1];
    EXPECT_GE(length, options.min_chunk_bytes) << "chunk " << i;
    EXPECT_LE(length, options.max_chunk_bytes + options.min_chunk_bytes - 1) << "chunk " << i;
    EXPECT_EQ(text[static_cast<size_t>(boundaries[i] - 1)], '\n') << "chunk " << i << " does not end a line";
    lengths.insert(length);
  }
  EXPECT_GT(lengths.size(), 3u) << "chunk lengths should vary with their drawn targets";
  EXPECT_EQ(chunk_boundaries(text, 12345, options), boundaries);
  EXPECT_NE(chunk_boundaries(text, 54321, options), boundaries) << "the lengths are keyed by the path's hash";
}

TEST_F(ByteCorpusTest, ALineLongerThanTheMaximumIsCutThereAndAShortFileIsOneChunk) {
  ByteCorpusOptions options;
  options.min_chunk_bytes = 10;
  options.max_chunk_bytes = 50;
  const auto long_line = chunk_boundaries(std::string(500, 'y'), 7, options);
  ASSERT_GE(long_line.size(), 3u);
  EXPECT_EQ(long_line[1], 50);
  EXPECT_EQ(chunk_boundaries("short\nfile\n", 7, options), (std::vector<int64_t>{0, 11}));
}

TEST_F(ByteCorpusTest, TopicsAreTheKindsOfTheBytesAndDomainsChangeAtEveryChunk) {
  const ByteCorpus corpus = build_byte_corpus(three_kinds());
  ASSERT_EQ(corpus.kinds.size(), 3u);
  EXPECT_EQ(corpus.kinds[0].name, "code");  // topics in name order
  EXPECT_EQ(corpus.kinds[1].name, "doc");
  EXPECT_EQ(corpus.kinds[2].name, "header");
  const char letter_of_topic[3] = {'c', 'd', 'h'};
  for (const TokenDataset* dataset : {&corpus.train, &corpus.eval}) {
    EXPECT_EQ(dataset->vocab_size, 256);
    EXPECT_EQ(dataset->topic_count, 3);
    ASSERT_EQ(dataset->topics.size(), dataset->tokens.size());
    int64_t changes = 0;
    for (size_t i = 0; i < dataset->tokens.size(); ++i) {
      const auto byte = static_cast<char>(dataset->tokens[i]);
      const int16_t topic = dataset->topics[i];
      if (byte >= 'A' && byte <= 'Z') {
        EXPECT_EQ(markers_[byte].kind, corpus.kinds[static_cast<size_t>(topic)].name) << "token " << i;
      } else if (byte != '\n') {
        EXPECT_EQ(byte, letter_of_topic[topic]) << "token " << i;
      }
      if (i > 0 && topic != dataset->topics[i - 1]) {
        ++changes;
        EXPECT_EQ(dataset->tokens[i - 1], '\n') << "a domain change inside a line at token " << i;
      }
    }
    int64_t chunks = 0;
    for (const auto& kind : corpus.kinds) chunks += dataset == &corpus.eval ? kind.eval_chunks : kind.train_chunks;
    EXPECT_EQ(changes, chunks - 1) << "consecutive chunks are of different kinds";
    EXPECT_GE(changes, 3);
    if (dataset->token_count() > 500) {
      EXPECT_EQ(dataset->document_length(0), 500);
    }
  }
}

TEST_F(ByteCorpusTest, EvaluationFilesNeverReachTheTrainingSplit) {
  const ByteCorpus corpus = build_byte_corpus(three_kinds());
  std::set<char> train_files, eval_files;
  for (const int32_t token : corpus.train.tokens) {
    if (token >= 'A' && token <= 'Z') train_files.insert(static_cast<char>(token));
  }
  for (const int32_t token : corpus.eval.tokens) {
    if (token >= 'A' && token <= 'Z') eval_files.insert(static_cast<char>(token));
  }
  for (const char marker : train_files) EXPECT_FALSE(markers_[marker].eval) << "file " << marker;
  for (const char marker : eval_files) EXPECT_TRUE(markers_[marker].eval) << "file " << marker;
  EXPECT_FALSE(train_files.empty());
  EXPECT_FALSE(eval_files.empty());
  int64_t files = 0;
  for (const auto& kind : corpus.kinds) {
    EXPECT_GT(kind.train_files, 0) << kind.name;
    EXPECT_GT(kind.eval_files, 0) << kind.name;
    files += kind.train_files + kind.eval_files;
  }
  EXPECT_EQ(files, 18);
}

TEST_F(ByteCorpusTest, TheSameInputsInAnyOrderGiveIdenticalFiles) {
  ByteCorpusOptions options = three_kinds();
  const ByteCorpus first = build_byte_corpus(options);
  // The same kinds and files, named in the other order and file by file instead of by directory.
  ByteCorpusOptions reordered = options;
  std::reverse(reordered.kinds.begin(), reordered.kinds.end());
  for (auto& kind : reordered.kinds) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(kind.paths[0])) files.push_back(entry.path());
    std::sort(files.rbegin(), files.rend());
    kind.paths = files;
  }
  const ByteCorpus second = build_byte_corpus(reordered);
  EXPECT_EQ(second.train.tokens, first.train.tokens);
  EXPECT_EQ(second.train.topics, first.train.topics);
  EXPECT_EQ(second.eval.tokens, first.eval.tokens);
  EXPECT_EQ(second.input_sha256, first.input_sha256);
  write_token_dataset(directory_ / "first.h5", first.train);
  write_token_dataset(directory_ / "again.h5", build_byte_corpus(options).train);
  EXPECT_EQ(read_file(directory_ / "first.h5"), read_file(directory_ / "again.h5"));

  options.seed = 2;
  EXPECT_NE(build_byte_corpus(options).train.tokens, first.train.tokens) << "the seed names the packing";
}

TEST_F(ByteCorpusTest, TheInputHashIsTheSha256OfTheFilesConcatenatedInKindThenPathOrder) {
  const ByteCorpusOptions options = three_kinds(3);
  const ByteCorpus corpus = build_byte_corpus(options);
  Sha256 expected;
  for (const std::string kind : {"code", "doc", "header"}) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(directory_ / kind)) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const auto& file : files) expected.update(std::span<const char>(read_file(file)));
  }
  EXPECT_EQ(corpus.input_sha256, expected.hex_digest());
  EXPECT_EQ(corpus.input_files, 9);
  const auto generator = nlohmann::json::parse(corpus.train.generator);
  EXPECT_EQ(generator["split"], "train");
  EXPECT_EQ(generator["input_sha256"], corpus.input_sha256);
  EXPECT_EQ(generator["kinds"][0]["name"], "code");
  EXPECT_EQ(nlohmann::json::parse(corpus.eval.generator)["split"], "eval");
}

TEST_F(ByteCorpusTest, EmptyAndBinaryFilesAreSkippedAndASymbolicLinkIsReadOnce) {
  ByteCorpusOptions options = three_kinds(4);
  write_file(directory_ / "code" / "empty.txt", "");
  write_file(directory_ / "code" / "binary.bin", std::string("c\0c\n", 4));
  fs::create_symlink(directory_ / "code" / "f0.txt", directory_ / "code" / "zz_link.txt");
  const ByteCorpus corpus = build_byte_corpus(options);
  EXPECT_EQ(corpus.kinds[0].skipped_empty, 1);
  EXPECT_EQ(corpus.kinds[0].skipped_binary, 1);
  EXPECT_EQ(corpus.kinds[0].train_files + corpus.kinds[0].eval_files, 4);
}

TEST_F(ByteCorpusTest, BadInputsAreRefusedNamingTheKindAndThePath) {
  ByteCorpusOptions options = three_kinds(3);
  {
    ByteCorpusOptions missing = options;
    missing.kinds[1].paths.push_back(directory_ / "nowhere");
    const std::string message = error_of([&] { build_byte_corpus(missing); });
    expect_contains(message, "kind 'code'");
    expect_contains(message, (directory_ / "nowhere").string() + ": no such file or directory");
  }
  {
    write_file(directory_ / "blank" / "empty.txt", "");
    ByteCorpusOptions no_text = options;
    no_text.kinds.push_back({"blank", {directory_ / "blank"}});
    const std::string message = error_of([&] { build_byte_corpus(no_text); });
    expect_contains(message, "kind 'blank': no text files in " + (directory_ / "blank").string());
    expect_contains(message, "1 empty");
  }
  {
    // A kind of one file has it on one side of the split only.
    write_file(directory_ / "lonely" / "only.txt", "x\n");
    ByteCorpusOptions one_sided = options;
    one_sided.kinds.push_back({"lonely", {directory_ / "lonely" / "only.txt"}});
    const std::string message = error_of([&] { build_byte_corpus(one_sided); });
    expect_contains(message, "kind 'lonely': all 1 text files fall in the");
    expect_contains(message, "--eval-fraction 0.5");
  }
  {
    ByteCorpusOptions single = options;
    single.kinds.resize(1);
    expect_contains(error_of([&] { build_byte_corpus(single); }), "1 kind(s) given");
  }
  {
    ByteCorpusOptions twice = options;
    twice.kinds[1].name = twice.kinds[0].name;
    expect_contains(error_of([&] { build_byte_corpus(twice); }), "kind 'header' is named twice");
  }
  {
    ByteCorpusOptions bad = options;
    bad.max_chunk_bytes = 10;
    expect_contains(error_of([&] { build_byte_corpus(bad); }), "--max-chunk-bytes 10: expected at least --min-chunk-bytes (40)");
    bad = options;
    bad.eval_fraction = 1.0;
    expect_contains(error_of([&] { build_byte_corpus(bad); }), "--eval-fraction 1: expected a share");
  }
}

TEST_F(ByteCorpusTest, KindArgumentsTakePathsAndListsAndRefuseBadOnes) {
  write_file(directory_ / "lists" / "python.txt", "# a comment\n\nsub/a.py\n/abs/b.py\n");
  std::vector<CorpusKind> kinds;
  add_kind_argument(kinds, "python=@" + (directory_ / "lists" / "python.txt").string());
  add_kind_argument(kinds, "c_header=/usr/include/stdio.h");
  add_kind_argument(kinds, "python=/more");
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(kinds[0].name, "python");
  EXPECT_EQ(kinds[0].paths, (std::vector<fs::path>{directory_ / "lists" / "sub/a.py", "/abs/b.py", "/more"}));
  EXPECT_EQ(kinds[1].paths, (std::vector<fs::path>{"/usr/include/stdio.h"}));
  expect_contains(error_of([&] { add_kind_argument(kinds, "python"); }), "--kind 'python': expected NAME=PATH");
  expect_contains(error_of([&] { add_kind_argument(kinds, "Python=/x"); }), "kind name 'Python'");
  expect_contains(error_of([&] { add_kind_argument(kinds, "python=@/no/list.txt"); }),
                  "list /no/list.txt: cannot open for reading");
}

TEST_F(ByteCorpusTest, TheCommandWritesBothSplitsAndRefusesAMissingPath) {
  const ByteCorpusOptions options = three_kinds(3);
  std::string kinds;
  for (const auto& kind : options.kinds) kinds += " --kind " + kind.name + "=" + testing::shell_quote(kind.paths[0].string());
  const std::string common = testing::shell_quote(TEMOE_BINARY) + " make-corpus --min-chunk-bytes 40 --max-chunk-bytes 120"
                             " --document-bytes 500 --eval-fraction 0.5 --out-train " +
                             testing::shell_quote((directory_ / "train.h5").string()) + " --out-eval " +
                             testing::shell_quote((directory_ / "eval.h5").string());
  const auto result = testing::run_shell_command(common + kinds + " --json " +
                                                 testing::shell_quote((directory_ / "corpus.json").string()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const ByteCorpus expected = build_byte_corpus(options);
  expect_contains(result.output, "sha256 " + expected.input_sha256);
  EXPECT_EQ(read_token_dataset(directory_ / "train.h5").tokens, expected.train.tokens);
  EXPECT_EQ(read_token_dataset(directory_ / "eval.h5").topics, expected.eval.topics);
  std::ifstream json(directory_ / "corpus.json");
  EXPECT_EQ(nlohmann::json::parse(json)["input_sha256"], expected.input_sha256);

  const auto refused = testing::run_shell_command(common + kinds + " --kind doc=/no/such/dir");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  expect_contains(refused.output, "kind 'doc': /no/such/dir: no such file or directory");
}

}  // namespace
}  // namespace temoe::data
