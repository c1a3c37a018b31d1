#include "src/data/topic_language.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"
#include "src/data/uniform_index.hpp"

namespace temoe::data {

namespace {

// The first key of every CounterRandom stream here, so the table and document streams never meet.
constexpr uint64_t kSuccessorTableStream = 0x7375636365737373ull;  // "successs"
constexpr uint64_t kDocumentStream = 0x646f63756d656e74ull;        // "document"

constexpr const char* kSegmentDistribution =
    "min_segment_length + geometric on {0, 1, ...} with mean mean_segment_length - min_segment_length";

}  // namespace

void TopicLanguageOptions::validate() const {
  if (topics < 2 || topics > std::numeric_limits<int16_t>::max()) {
    TEMOE_FAIL("data.topics = " << topics << ": expected 2 to " << std::numeric_limits<int16_t>::max());
  }
  if (vocab_size < 2 * topics || vocab_size > std::numeric_limits<int32_t>::max()) {
    TEMOE_FAIL("data.vocab_size = " << vocab_size << ": expected at least 2 tokens per topic (>= " << 2 * topics
                                    << " for " << topics << " topics) and at most "
                                    << std::numeric_limits<int32_t>::max());
  }
  if (min_segment_length < 1) TEMOE_FAIL("data.min_segment_length = " << min_segment_length << ": expected >= 1");
  if (!(mean_segment_length >= static_cast<double>(min_segment_length)) || !std::isfinite(mean_segment_length)) {
    TEMOE_FAIL("data.mean_segment_length = " << mean_segment_length << ": expected a finite value >= "
                                             << "data.min_segment_length = " << min_segment_length);
  }
  if (!(own_vocabulary_probability >= 0 && own_vocabulary_probability <= 1)) {
    TEMOE_FAIL("data.own_vocabulary_probability = " << own_vocabulary_probability << ": expected a probability in [0, 1]");
  }
  if (!(successor_probability >= 0 && successor_probability <= 1)) {
    TEMOE_FAIL("data.successor_probability = " << successor_probability << ": expected a probability in [0, 1]");
  }
  if (successors < 1 || successors > vocab_size / topics) {
    TEMOE_FAIL("data.successors = " << successors << ": expected 1 to " << vocab_size / topics
                                    << " (the size of the smallest topic's part of the vocabulary)");
  }
  if (documents < 1) TEMOE_FAIL("data.documents = " << documents << ": expected >= 1");
  if (document_length < 1) TEMOE_FAIL("data.document_length = " << document_length << ": expected >= 1");
  if (min_document_length < 0 || min_document_length > document_length) {
    TEMOE_FAIL("data.min_document_length = " << min_document_length << ": expected 0 (all documents "
                                             << document_length << " tokens) or 1 to data.document_length = "
                                             << document_length);
  }
  // Token counts and offsets are int64; refuse sizes that would not fit in memory anyway.
  if (documents > (int64_t{1} << 40) / document_length) {
    TEMOE_FAIL("data.documents x data.document_length = " << documents << " x " << document_length
                                                          << " tokens is too large");
  }
}

nlohmann::json TopicLanguageOptions::to_json() const {
  return {
      {"name", "topic_language"},
      {"vocab_size", vocab_size},
      {"topics", topics},
      {"mean_segment_length", mean_segment_length},
      {"min_segment_length", min_segment_length},
      {"segment_length_distribution", kSegmentDistribution},
      {"own_vocabulary_probability", own_vocabulary_probability},
      {"successors", successors},
      {"successor_probability", successor_probability},
      {"documents", documents},
      {"document_length", document_length},
      {"min_document_length", min_document_length},
      {"language_seed", language_seed},
      {"seed", seed},
  };
}

TopicLanguageOptions TopicLanguageOptions::from_json(const nlohmann::json& json) {
  if (!json.is_object()) TEMOE_FAIL("topic-language parameters: expected a JSON object, got " << json.dump());
  if (json.contains("name") && json["name"] != "topic_language") {
    TEMOE_FAIL("topic-language parameters: name = " << json["name"].dump() << "; expected \"topic_language\"");
  }
  TopicLanguageOptions options;
  for (const auto& [key, value] : json.items()) {
    try {
      if (key == "name" || key == "segment_length_distribution") continue;
      if (key == "vocab_size") options.vocab_size = value.get<int64_t>();
      else if (key == "topics") options.topics = value.get<int64_t>();
      else if (key == "mean_segment_length") options.mean_segment_length = value.get<double>();
      else if (key == "min_segment_length") options.min_segment_length = value.get<int64_t>();
      else if (key == "own_vocabulary_probability") options.own_vocabulary_probability = value.get<double>();
      else if (key == "successors") options.successors = value.get<int64_t>();
      else if (key == "successor_probability") options.successor_probability = value.get<double>();
      else if (key == "documents") options.documents = value.get<int64_t>();
      else if (key == "document_length") options.document_length = value.get<int64_t>();
      else if (key == "min_document_length") options.min_document_length = value.get<int64_t>();
      else if (key == "language_seed") options.language_seed = value.get<uint64_t>();
      else if (key == "seed") options.seed = value.get<uint64_t>();
      else TEMOE_FAIL("topic-language parameters: unknown key '" << key << "'");
    } catch (const nlohmann::json::exception& error) {
      TEMOE_FAIL("topic-language parameters: key '" << key << "' = " << value.dump() << ": " << error.what());
    }
  }
  return options;
}

TopicLanguage::TopicLanguage(const TopicLanguageOptions& options) : options_(options) {
  options_.validate();
  const int64_t topics = options_.topics, vocab = options_.vocab_size, count = options_.successors;
  successor_table_.resize(static_cast<size_t>(topics * vocab * count));
  for (int64_t topic = 0; topic < topics; ++topic) {
    const int64_t begin = part_begin(topic), size = part_end(topic) - begin;
    for (int64_t previous = 0; previous < vocab; ++previous) {
      // `count` distinct tokens of the part: the first steps of a Fisher-Yates shuffle of it.
      CounterRandom random(options_.language_seed,
                           {kSuccessorTableStream, static_cast<uint64_t>(topic), static_cast<uint64_t>(previous)});
      std::vector<int32_t> part(static_cast<size_t>(size));
      for (int64_t index = 0; index < size; ++index) part[index] = static_cast<int32_t>(begin + index);
      int32_t* row = &successor_table_[static_cast<size_t>((topic * vocab + previous) * count)];
      for (int64_t index = 0; index < count; ++index) {
        const int64_t pick = index + static_cast<int64_t>(uniform_index(random, static_cast<uint64_t>(size - index)));
        std::swap(part[index], part[pick]);
        row[index] = part[index];
      }
    }
  }
}

int64_t TopicLanguage::owner(int64_t token) const {
  TEMOE_CHECK(token >= 0 && token < options_.vocab_size, "token " << token << " outside [0, " << options_.vocab_size << ")");
  // part_begin is floor(k V / K); the owner is the largest k with part_begin(k) <= token.
  int64_t topic = (token * options_.topics) / options_.vocab_size;
  while (topic + 1 < options_.topics && part_begin(topic + 1) <= token) ++topic;
  while (part_begin(topic) > token) --topic;
  return topic;
}

std::span<const int32_t> TopicLanguage::successors(int64_t topic, int64_t previous) const {
  TEMOE_CHECK(topic >= 0 && topic < options_.topics && previous >= 0 && previous < options_.vocab_size,
              "successors(" << topic << ", " << previous << ") out of range");
  const size_t count = static_cast<size_t>(options_.successors);
  return {&successor_table_[static_cast<size_t>(topic * options_.vocab_size + previous) * count], count};
}

int64_t TopicLanguage::document_length(int64_t document) const {
  if (options_.min_document_length == 0 || options_.min_document_length == options_.document_length) {
    return options_.document_length;
  }
  // A stream of its own, so the length does not shift the token draws of the document.
  CounterRandom random(options_.seed, {kDocumentStream, static_cast<uint64_t>(document), 1});
  const auto spread = static_cast<uint64_t>(options_.document_length - options_.min_document_length + 1);
  return options_.min_document_length + static_cast<int64_t>(uniform_index(random, spread));
}

void TopicLanguage::generate_document(int64_t document, std::vector<int32_t>& tokens,
                                      std::vector<int16_t>& topics) const {
  TEMOE_CHECK(document >= 0, "document index " << document << " is negative");
  const int64_t length = document_length(document);
  tokens.resize(static_cast<size_t>(length));
  topics.resize(static_cast<size_t>(length));
  CounterRandom random(options_.seed, {kDocumentStream, static_cast<uint64_t>(document), 0});

  // Segment length: min + G, G geometric on {0, 1, ...} with success probability q and mean
  // (1 - q) / q = mean - min, drawn by inversion: G = floor(log(u) / log(1 - q)).
  const double excess = options_.mean_segment_length - static_cast<double>(options_.min_segment_length);
  const double log_continue = std::log(excess / (excess + 1));  // log(1 - q), q = 1 / (excess + 1)
  auto draw_segment_length = [&]() -> int64_t {
    if (excess <= 0) return options_.min_segment_length;
    const double geometric = std::floor(std::log(random.uniform()) / log_continue);
    return options_.min_segment_length + static_cast<int64_t>(geometric);
  };

  const auto topic_count = static_cast<uint64_t>(options_.topics);
  int64_t topic = static_cast<int64_t>(uniform_index(random, topic_count));
  int64_t remaining = draw_segment_length();
  int64_t previous = -1;
  for (int64_t position = 0; position < length; ++position) {
    if (remaining == 0) {
      // Uniformly among the K - 1 other topics.
      topic = (topic + 1 + static_cast<int64_t>(uniform_index(random, topic_count - 1))) % options_.topics;
      remaining = draw_segment_length();
    }
    --remaining;
    const int64_t begin = part_begin(topic), size = part_end(topic) - begin;
    int64_t token;
    if (random.uniform() < options_.own_vocabulary_probability) {
      if (previous >= 0 && random.uniform() < options_.successor_probability) {
        const auto candidates = successors(topic, previous);
        token = candidates[uniform_index(random, candidates.size())];
      } else {
        token = begin + static_cast<int64_t>(uniform_index(random, static_cast<uint64_t>(size)));
      }
    } else {
      // Uniform over the tokens outside the topic's part.
      const int64_t other = static_cast<int64_t>(uniform_index(random, static_cast<uint64_t>(options_.vocab_size - size)));
      token = other < begin ? other : other + size;
    }
    tokens[position] = static_cast<int32_t>(token);
    topics[position] = static_cast<int16_t>(topic);
    previous = token;
  }
}

TokenDataset TopicLanguage::generate() const {
  TokenDataset dataset;
  dataset.vocab_size = options_.vocab_size;
  dataset.topic_count = options_.topics;
  dataset.generator = options_.to_json().dump();
  dataset.document_offsets.reserve(static_cast<size_t>(options_.documents + 1));
  dataset.document_offsets.push_back(0);
  int64_t total = 0;
  for (int64_t document = 0; document < options_.documents; ++document) total += document_length(document);
  dataset.tokens.reserve(static_cast<size_t>(total));
  dataset.topics.reserve(static_cast<size_t>(total));
  std::vector<int32_t> tokens;
  std::vector<int16_t> topics;
  for (int64_t document = 0; document < options_.documents; ++document) {
    generate_document(document, tokens, topics);
    dataset.tokens.insert(dataset.tokens.end(), tokens.begin(), tokens.end());
    dataset.topics.insert(dataset.topics.end(), topics.begin(), topics.end());
    dataset.document_offsets.push_back(static_cast<int64_t>(dataset.tokens.size()));
  }
  return dataset;
}

}  // namespace temoe::data
