// The topic language: its measured statistics follow its parameters, documents are a function of
// (seed, document index) alone, the same seed writes a byte-identical file, and bad parameters are
// refused by name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/data/token_dataset.hpp"
#include "src/data/topic_language.hpp"
#include "src/data/topic_statistics.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/support/error_message.hpp"

namespace temoe::data {
namespace {

namespace fs = std::filesystem;

using testing::error_of;

using testing::expect_contains;

std::string read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

class TopicLanguageTest : public testing::ScratchDirectoryTest {
 protected:
  fs::path path(const std::string& name) const { return directory_ / name; }

};

// Long documents, so that few segments are cut by a document end: about 20,000 segments.
TopicLanguageOptions long_documents() {
  TopicLanguageOptions options;
  options.documents = 20;
  options.document_length = 50000;
  return options;
}

TEST_F(TopicLanguageTest, MeasuredStatisticsFollowTheParameters) {
  for (const double mean : {48.0, 120.0}) {
    TopicLanguageOptions options = long_documents();
    options.mean_segment_length = mean;
    options.own_vocabulary_probability = 0.85;
    const TokenDataset dataset = TopicLanguage(options).generate();
    const TopicStatistics statistics = measure_topic_statistics(dataset);
    SCOPED_TRACE("mean segment length " + std::to_string(mean));
    // Segment lengths have a standard deviation of about the mean: with n segments the estimate's
    // relative error is about 1/sqrt(n), under 1.5% here.
    EXPECT_NEAR(statistics.mean_segment_length, mean, 0.03 * mean);
    ASSERT_EQ(statistics.own_fraction.size(), 4u);
    for (double fraction : statistics.own_fraction) EXPECT_NEAR(fraction, 0.85, 0.01);
    EXPECT_NEAR(statistics.own_fraction_overall, 0.85, 0.005);
    for (double share : statistics.topic_share) EXPECT_NEAR(share, 0.25, 0.05);
    // Knowing the topic or the previous token must tell a lot: both matter.
    EXPECT_LT(statistics.topic_conditional_entropy, statistics.unigram_entropy - 0.5);
    EXPECT_LT(statistics.bigram_conditional_entropy, statistics.unigram_entropy - 1.0);
  }
}

TEST_F(TopicLanguageTest, SegmentsRespectTheMinimumAndSwitchToAnotherTopic) {
  TopicLanguageOptions options = long_documents();
  options.documents = 2;
  options.min_segment_length = 20;
  options.mean_segment_length = 30;
  const TokenDataset dataset = TopicLanguage(options).generate();
  for (int64_t document = 0; document < dataset.document_count(); ++document) {
    const int64_t begin = dataset.document_begin(document), end = begin + dataset.document_length(document);
    int64_t segment_start = begin;
    for (int64_t index = begin + 1; index < end; ++index) {
      if (dataset.topics[index] == dataset.topics[index - 1]) continue;
      EXPECT_GE(index - segment_start, 20) << "segment at " << segment_start << " of document " << document;
      segment_start = index;
    }
  }
}

TEST_F(TopicLanguageTest, DocumentsStartAndEndWhereTheOffsetsSay) {
  TopicLanguageOptions options;
  options.documents = 300;
  options.document_length = 200;
  options.min_document_length = 50;
  const TopicLanguage language(options);
  const TokenDataset dataset = language.generate();
  ASSERT_EQ(dataset.document_count(), 300);
  ASSERT_EQ(dataset.document_offsets.front(), 0);
  ASSERT_EQ(dataset.document_offsets.back(), dataset.token_count());
  std::set<int64_t> lengths, first_topics;
  std::vector<int32_t> tokens;
  std::vector<int16_t> topics;
  // Generated alone and in reverse order, each document is the slice the offsets name.
  for (int64_t document = dataset.document_count() - 1; document >= 0; --document) {
    language.generate_document(document, tokens, topics);
    const int64_t begin = dataset.document_begin(document), length = dataset.document_length(document);
    ASSERT_EQ(static_cast<int64_t>(tokens.size()), length) << "document " << document;
    EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), dataset.tokens.begin() + begin)) << "document " << document;
    EXPECT_TRUE(std::equal(topics.begin(), topics.end(), dataset.topics.begin() + begin)) << "document " << document;
    EXPECT_GE(length, 50);
    EXPECT_LE(length, 200);
    lengths.insert(length);
    first_topics.insert(topics.front());
  }
  EXPECT_GT(lengths.size(), 50u) << "document lengths should vary over [50, 200]";
  EXPECT_EQ(first_topics.size(), 4u) << "documents should start in every topic";
  validate_token_dataset(dataset, "generated");
}

TEST_F(TopicLanguageTest, SuccessorsLieInTheTopicsPartAndDependOnlyOnTheLanguageSeed) {
  TopicLanguageOptions options;
  const TopicLanguage language(options);
  options.seed = 99;  // other documents, same language
  const TopicLanguage same_language(options);
  options.language_seed = 2;
  const TopicLanguage other_language(options);
  int differing = 0;
  for (int64_t topic = 0; topic < 4; ++topic) {
    EXPECT_EQ(language.part_begin(topic), topic * 32);
    for (int64_t previous = 0; previous < 128; ++previous) {
      const auto successors = language.successors(topic, previous);
      ASSERT_EQ(successors.size(), 4u);
      EXPECT_EQ(std::set<int32_t>(successors.begin(), successors.end()).size(), 4u) << "successors are distinct";
      for (int32_t token : successors) EXPECT_EQ(language.owner(token), topic);
      const auto same = same_language.successors(topic, previous);
      EXPECT_TRUE(std::equal(successors.begin(), successors.end(), same.begin()));
      const auto other = other_language.successors(topic, previous);
      differing += !std::equal(successors.begin(), successors.end(), other.begin());
    }
  }
  EXPECT_GT(differing, 400) << "another language seed should give other bigram tables";
}

TEST_F(TopicLanguageTest, SameSeedWritesAByteIdenticalFileAndAnotherSeedAnotherFile) {
  TopicLanguageOptions options;
  options.documents = 64;
  write_token_dataset(path("a.h5"), TopicLanguage(options).generate());
  write_token_dataset(path("b.h5"), TopicLanguage(options).generate());
  options.seed = 2;
  write_token_dataset(path("c.h5"), TopicLanguage(options).generate());
  const std::string a = read_bytes(path("a.h5")), b = read_bytes(path("b.h5")), c = read_bytes(path("c.h5"));
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "the same seed must give the same bytes";
  EXPECT_FALSE(a == c) << "another seed must give another file";
  // No temporary file is left beside the output.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(directory_)) ++entries;
  EXPECT_EQ(entries, 3);

  const TokenDataset read = read_token_dataset(path("a.h5"));
  const TopicLanguageOptions recorded = TopicLanguageOptions::from_json(nlohmann::json::parse(read.generator));
  EXPECT_EQ(recorded.documents, 64);
  EXPECT_EQ(recorded.seed, 1u);
  EXPECT_EQ(recorded.to_json(), TopicLanguageOptions{.documents = 64}.to_json());
}

TEST_F(TopicLanguageTest, BadParametersAreRefusedByName) {
  const auto refusal = [](const std::function<void(TopicLanguageOptions&)>& change) {
    TopicLanguageOptions options;
    change(options);
    return error_of([&] { TopicLanguage language(options); });
  };
  expect_contains(refusal([](auto& o) { o.topics = 1; }), "data.topics = 1");
  expect_contains(refusal([](auto& o) { o.vocab_size = 6; }), "data.vocab_size = 6");
  expect_contains(refusal([](auto& o) { o.mean_segment_length = 4; }), "data.mean_segment_length = 4");
  expect_contains(refusal([](auto& o) { o.min_segment_length = 0; }), "data.min_segment_length = 0");
  expect_contains(refusal([](auto& o) { o.own_vocabulary_probability = 1.5; }), "data.own_vocabulary_probability = 1.5");
  expect_contains(refusal([](auto& o) { o.successor_probability = -0.1; }), "data.successor_probability = -0.1");
  expect_contains(refusal([](auto& o) { o.successors = 33; }), "data.successors = 33");
  expect_contains(refusal([](auto& o) { o.documents = 0; }), "data.documents = 0");
  expect_contains(refusal([](auto& o) { o.document_length = 0; }), "data.document_length = 0");
  expect_contains(refusal([](auto& o) { o.min_document_length = 600; }), "data.min_document_length = 600");
  expect_contains(error_of([] { TopicLanguageOptions::from_json({{"topic", 3}}); }), "unknown key 'topic'");
}

}  // namespace
}  // namespace temoe::data
