// The batch sampler: windows never cross a document, each epoch serves every window exactly once,
// flags mark document ends and truncations, and the order depends on (seed, epoch) only, so that
// 2 data-parallel ranks with B sequences each see exactly what 1 rank with 2B sees.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/data/batch_sampler.hpp"
#include "src/data/token_dataset.hpp"
#include "src/data/topic_language.hpp"
#include "tests/support/error_message.hpp"

namespace temoe::data {
namespace {

using testing::error_of;

using testing::expect_contains;

// Documents of the given lengths; token i of the whole stream is i % vocab, topic = document % 3.
TokenDataset documents_of_lengths(const std::vector<int64_t>& lengths) {
  TokenDataset dataset;
  dataset.vocab_size = 1000;
  dataset.topic_count = 3;
  dataset.document_offsets = {0};
  for (size_t document = 0; document < lengths.size(); ++document) {
    for (int64_t index = 0; index < lengths[document]; ++index) {
      dataset.tokens.push_back(static_cast<int32_t>(dataset.tokens.size() % 1000));
      dataset.topics.push_back(static_cast<int16_t>(document % 3));
    }
    dataset.document_offsets.push_back(static_cast<int64_t>(dataset.tokens.size()));
  }
  return dataset;
}

TEST(BatchSampler, WindowsTileEachDocumentAndCoverItsEnd) {
  // T = 4: a document of L tokens has windows at 0, 4, ... while s + 5 <= L, then one at L - 5.
  const TokenDataset dataset = documents_of_lengths({4, 5, 9, 12, 3, 13});
  BatchSampler sampler(dataset, {.sequence_length = 4, .seed = 7});
  EXPECT_EQ(sampler.skipped_documents(), 2);  // the documents of 4 and 3 tokens
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t window = 0; window < sampler.window_count(); ++window) {
    windows.emplace_back(sampler.window_document(window), sampler.window_start(window));
  }
  const std::vector<std::pair<int64_t, int64_t>> expected = {
      {1, 0},                  // 5 tokens: one window, ending at the document end
      {2, 0}, {2, 4},          // 9 tokens: 0 and 4, the second ends at the end
      {3, 0}, {3, 4}, {3, 7},  // 12 tokens: 0, 4, then 7 to reach the end
      {5, 0}, {5, 4}, {5, 8},  // 13 tokens: 0, 4, 8 (ends at the end)
  };
  EXPECT_EQ(windows, expected);

  BatchSampler tiled(dataset, {.sequence_length = 4, .seed = 7, .cover_document_ends = false});
  EXPECT_EQ(tiled.window_count(), 8);  // {3, 7} is not added
}

TEST(BatchSampler, SequencesCarryTargetsTopicsFlagsAndTheirPlace) {
  const TokenDataset dataset = documents_of_lengths({5, 9, 12, 3, 13, 40});
  BatchSampler sampler(dataset, {.sequence_length = 4, .seed = 3});
  const int64_t windows = sampler.window_count();
  const SequenceBatch batch = sampler.sequences(0, 3 * windows);
  ASSERT_EQ(batch.batch, 3 * windows);
  ASSERT_EQ(batch.time, 4);
  for (int64_t row = 0; row < batch.batch; ++row) {
    const int64_t document = batch.document[row], start = batch.start[row];
    const int64_t begin = dataset.document_begin(document), length = dataset.document_length(document);
    EXPECT_EQ(batch.global_index[row], row);
    EXPECT_EQ(batch.epoch[row], row / windows);
    EXPECT_EQ(batch.position[row], row % windows);
    EXPECT_EQ(batch.window[row], sampler.window_at(batch.epoch[row], batch.position[row]));
    // Inputs and targets lie inside the document.
    ASSERT_GE(start, 0);
    ASSERT_LE(start + 5, length) << "window crosses the end of document " << document;
    for (int64_t t = 0; t < 4; ++t) {
      const size_t cell = static_cast<size_t>(row * 4 + t);
      EXPECT_EQ(batch.tokens[cell], dataset.tokens[begin + start + t]);
      EXPECT_EQ(batch.targets[cell], dataset.tokens[begin + start + t + 1]);
      EXPECT_EQ(batch.topics[cell], document % 3);
      const bool last = t == 3;
      const bool at_end = start + 5 == length;
      EXPECT_EQ(batch.document_ends[cell], last && at_end) << "row " << row << " t " << t;
      EXPECT_EQ(batch.truncated[cell], last && !at_end) << "row " << row << " t " << t;
    }
  }
  const TokenArray array = batch.token_array();
  EXPECT_EQ(array.shape, (Shape{3 * windows, 4}));
  EXPECT_EQ(array.ids, batch.tokens);
}

TEST(BatchSampler, EveryEpochServesEveryWindowOnceInItsOwnOrder) {
  TopicLanguageOptions options;
  options.documents = 80;
  options.document_length = 300;
  options.min_document_length = 20;
  const TokenDataset dataset = TopicLanguage(options).generate();
  BatchSampler sampler(dataset, {.sequence_length = 64, .seed = 11});
  const int64_t windows = sampler.window_count();
  ASSERT_GT(windows, 100);
  // Steps of 48 sequences do not divide the epoch: batches straddle epoch boundaries.
  std::map<int64_t, std::vector<int64_t>> served;  // epoch -> windows in order
  for (int64_t step = 0; step * 48 < 3 * windows; ++step) {
    const SequenceBatch batch = sampler.batch(step, 48, 0, 48);
    for (int64_t row = 0; row < batch.batch; ++row) {
      if (batch.epoch[row] < 3) served[batch.epoch[row]].push_back(batch.window[row]);
    }
  }
  ASSERT_EQ(served.size(), 3u);
  for (const auto& [epoch, order] : served) {
    EXPECT_EQ(static_cast<int64_t>(order.size()), windows) << "epoch " << epoch;
    EXPECT_EQ(static_cast<int64_t>(std::set<int64_t>(order.begin(), order.end()).size()), windows)
        << "epoch " << epoch << " repeats a window";
  }
  EXPECT_NE(served[0], served[1]) << "each epoch has its own order";
  // The order depends on the seed.
  BatchSampler reseeded(dataset, {.sequence_length = 64, .seed = 12});
  const SequenceBatch other = reseeded.sequences(0, windows);
  EXPECT_NE(other.window, served[0]);
  // Skipped documents: those shorter than 65 tokens.
  int64_t short_documents = 0;
  for (int64_t document = 0; document < dataset.document_count(); ++document) {
    short_documents += dataset.document_length(document) < 65;
  }
  EXPECT_EQ(sampler.skipped_documents(), short_documents);
}

TEST(BatchSampler, TwoRanksWithBEachSeeWhatOneRankWith2BSees) {
  TopicLanguageOptions options;
  options.documents = 30;
  options.document_length = 512;
  const TokenDataset dataset = TopicLanguage(options).generate();
  const SamplerOptions sampler_options{.sequence_length = 128, .seed = 5};
  BatchSampler single(dataset, sampler_options);
  // Each rank has its own sampler, as on separate processes; rank 1 asks first.
  BatchSampler rank0(dataset, sampler_options), rank1(dataset, sampler_options);
  const int64_t per_rank = 8, global = 16;
  ASSERT_EQ(single.window_count(), 120);  // not a multiple of 16: steps straddle epochs
  for (int64_t step = 0; step < 20; ++step) {
    const SequenceRange slice1 = data_parallel_slice(global, 1, 2), slice0 = data_parallel_slice(global, 0, 2);
    EXPECT_EQ(slice0.first, 0);
    EXPECT_EQ(slice1.first, per_rank);
    EXPECT_EQ(slice1.count, per_rank);
    const SequenceBatch second = rank1.batch(step, global, slice1.first, slice1.count);
    const SequenceBatch first = rank0.batch(step, global, slice0.first, slice0.count);
    const SequenceBatch whole = single.batch(step, global, 0, global);
    const auto concatenated = [](auto a, const auto& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_EQ(concatenated(first.tokens, second.tokens), whole.tokens);
    EXPECT_EQ(concatenated(first.targets, second.targets), whole.targets);
    EXPECT_EQ(concatenated(first.topics, second.topics), whole.topics);
    EXPECT_EQ(concatenated(first.document_ends, second.document_ends), whole.document_ends);
    EXPECT_EQ(concatenated(first.truncated, second.truncated), whole.truncated);
    EXPECT_EQ(concatenated(first.global_index, second.global_index), whole.global_index);
    EXPECT_EQ(concatenated(first.epoch, second.epoch), whole.epoch);
    EXPECT_EQ(concatenated(first.position, second.position), whole.position);
  }
  // A resumed run (a fresh sampler asked for step 19 first) sees the same batch.
  BatchSampler resumed(dataset, sampler_options);
  EXPECT_EQ(resumed.batch(19, global, 0, global).tokens, single.batch(19, global, 0, global).tokens);
}

TEST(BatchSampler, BadRequestsAreRefused) {
  const TokenDataset dataset = documents_of_lengths({5, 9});
  expect_contains(error_of([&] { BatchSampler sampler(dataset, {.sequence_length = 9}); }),
                  "no document has the 10 tokens a training sequence of 9 needs");
  expect_contains(error_of([&] { BatchSampler sampler(dataset, {.sequence_length = 0}); }), "sequence length 0");
  BatchSampler sampler(dataset, {.sequence_length = 4});
  expect_contains(error_of([&] { sampler.batch(0, 4, 2, 3); }), "sequences [2, 5)");
  expect_contains(error_of([&] { data_parallel_slice(6, 0, 4); }),
                  "global batch of 6 sequences does not split evenly over 4 data-parallel ranks");
  expect_contains(error_of([&] { data_parallel_slice(8, 4, 4); }), "data-parallel rank 4 of 4");
}

}  // namespace
}  // namespace temoe::data
