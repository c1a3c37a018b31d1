#include "src/data/topic_statistics.hpp"

#include <cmath>
#include <limits>

#include "src/core/error.hpp"

namespace temoe::data {

namespace {

// Entropy in nats of the distribution given by `counts` (which sum to `total`).
double entropy(const int64_t* counts, size_t size, int64_t total) {
  if (total == 0) return 0;
  double value = 0;
  for (size_t index = 0; index < size; ++index) {
    if (counts[index] == 0) continue;
    const double probability = static_cast<double>(counts[index]) / static_cast<double>(total);
    value -= probability * std::log(probability);
  }
  return value;
}

// JSON has no infinity: write null for a value that is not finite.
nlohmann::json finite_or_null(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); }

}  // namespace

TopicStatistics measure_topic_statistics(const TokenDataset& dataset) {
  const std::string origin = dataset.path.empty() ? std::string("token data") : dataset.path.string();
  if (!dataset.has_topics()) TEMOE_FAIL(origin << ": has no topic labels (/topics); topic statistics need them");
  const int64_t vocab = dataset.vocab_size, topics = dataset.topic_count;
  const auto vocab_size = static_cast<size_t>(vocab), topic_size = static_cast<size_t>(topics);
  TopicStatistics statistics;
  statistics.documents = dataset.document_count();
  statistics.tokens = dataset.token_count();

  std::vector<int64_t> unigram(vocab_size, 0);
  std::vector<int64_t> topic_tokens(topic_size * vocab_size, 0);  // [K, V]
  std::vector<int64_t> bigram(vocab_size * vocab_size, 0);         // [V previous, V next]
  std::vector<int64_t> topic_count(topic_size, 0), own_count(topic_size, 0);
  int64_t pairs = 0;
  for (int64_t document = 0; document < statistics.documents; ++document) {
    const int64_t begin = dataset.document_offsets[document], end = dataset.document_offsets[document + 1];
    for (int64_t index = begin; index < end; ++index) {
      const auto token = static_cast<size_t>(dataset.tokens[index]);
      const auto topic = static_cast<size_t>(dataset.topics[index]);
      ++unigram[token];
      ++topic_tokens[topic * vocab_size + token];
      ++topic_count[topic];
      const int64_t part_begin = static_cast<int64_t>(topic) * vocab / topics;
      const int64_t part_end = static_cast<int64_t>(topic + 1) * vocab / topics;
      if (static_cast<int64_t>(token) >= part_begin && static_cast<int64_t>(token) < part_end) ++own_count[topic];
      if (index > begin) {
        ++bigram[static_cast<size_t>(dataset.tokens[index - 1]) * vocab_size + token];
        ++pairs;
        if (dataset.topics[index] != dataset.topics[index - 1]) ++statistics.topic_switches;
      }
    }
  }

  const auto tokens = static_cast<double>(statistics.tokens);
  statistics.mean_segment_length = statistics.topic_switches > 0
                                       ? tokens / static_cast<double>(statistics.topic_switches)
                                       : std::numeric_limits<double>::infinity();
  statistics.mean_observed_segment_length =
      tokens / static_cast<double>(statistics.documents + statistics.topic_switches);
  int64_t own_total = 0;
  for (size_t topic = 0; topic < topic_size; ++topic) {
    statistics.topic_share.push_back(static_cast<double>(topic_count[topic]) / tokens);
    statistics.own_fraction.push_back(topic_count[topic] > 0 ? static_cast<double>(own_count[topic]) /
                                                                   static_cast<double>(topic_count[topic])
                                                             : 0.0);
    own_total += own_count[topic];
  }
  statistics.own_fraction_overall = static_cast<double>(own_total) / tokens;
  statistics.unigram_entropy = entropy(unigram.data(), vocab_size, statistics.tokens);

  // H(next | previous) = sum over previous of P(previous) H(next | previous).
  double conditional = 0;
  for (size_t previous = 0; previous < vocab_size; ++previous) {
    const int64_t* row = &bigram[previous * vocab_size];
    int64_t row_total = 0;
    for (size_t next = 0; next < vocab_size; ++next) row_total += row[next];
    if (row_total == 0) continue;
    conditional += static_cast<double>(row_total) / static_cast<double>(pairs) * entropy(row, vocab_size, row_total);
  }
  statistics.bigram_conditional_entropy = conditional;
  double given_topic = 0;
  for (size_t topic = 0; topic < topic_size; ++topic) {
    given_topic += statistics.topic_share[topic] * entropy(&topic_tokens[topic * vocab_size], vocab_size, topic_count[topic]);
  }
  statistics.topic_conditional_entropy = given_topic;
  return statistics;
}

nlohmann::json TopicStatistics::to_json() const {
  return {
      {"documents", documents},
      {"tokens", tokens},
      {"topic_switches", topic_switches},
      {"mean_segment_length", finite_or_null(mean_segment_length)},
      {"mean_observed_segment_length", mean_observed_segment_length},
      {"topic_share", topic_share},
      {"own_fraction", own_fraction},
      {"own_fraction_overall", own_fraction_overall},
      {"unigram_entropy_nats", unigram_entropy},
      {"bigram_conditional_entropy_nats", bigram_conditional_entropy},
      {"topic_conditional_entropy_nats", topic_conditional_entropy},
  };
}

}  // namespace temoe::data
