#pragma once
// The synthetic "topic" language of the embedded testbed (DESIGN.md section 4, issue 6 part 1).
//
// A hidden Markov chain over K topics that persist for many tokens, each topic with its own token
// statistics, so that a tiny MoE pretrained on it grows experts that specialise by topic:
// - Vocabulary: topic k owns the tokens [k*V/K, (k+1)*V/K) (its "part").
// - Topic segments: a document starts in a uniformly drawn topic. A segment lasts
//   L = min_segment_length + G tokens, G geometric on {0, 1, ...} with mean
//   mean_segment_length - min_segment_length (a constant hazard after a minimum, so segments
//   are never a handful of tokens long). When a segment ends, the next topic is drawn uniformly
//   among the K - 1 other topics. Documents cut the last segment short.
// - Tokens: with probability own_vocabulary_probability (p_own) the token comes from the topic's
//   part, otherwise uniformly from the other topics' parts (noise, so a single token does not give
//   the topic away for certain). Inside the part, with probability successor_probability it is one
//   of the `successors` likely successors of the previous token in this topic's bigram table
//   (uniformly), otherwise uniform over the part. The first token of a document has no previous
//   token and is uniform over the part. So both the topic and the context matter, and topics are
//   distinguishable by their vocabulary: DESIGN.md section 4 measured that topics sharing one
//   vocabulary give experts that barely specialise.
// - Determinism: the bigram tables are a function of language_seed alone (keyed by
//   (language_seed, topic, previous token)); document d is a function of (seed, d) alone, so
//   documents can be generated independently and in any order. A held-out set of the same language
//   is the same options with another `seed`.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "src/data/token_dataset.hpp"

namespace temoe::data {

struct TopicLanguageOptions {
  int64_t vocab_size = 128;                 // V: token ids [0, V)
  int64_t topics = 4;                       // K >= 2
  double mean_segment_length = 48;          // tokens per topic segment, before documents cut them
  int64_t min_segment_length = 8;           // segments last at least this many tokens
  double own_vocabulary_probability = 0.9;  // p_own: chance a token is from its topic's part
  int64_t successors = 4;                   // likely successors of each token in each topic
  double successor_probability = 0.75;      // chance an own-part token is a successor of the previous one
  int64_t documents = 4096;                 // D
  int64_t document_length = 512;            // tokens per document (the longest, when lengths vary)
  int64_t min_document_length = 0;          // 0: all documents have document_length tokens; else
                                            // lengths are uniform in [min_document_length, document_length]
  uint64_t language_seed = 1;               // names the bigram tables (the language itself)
  uint64_t seed = 1;                        // names the documents drawn from the language

  // Throws temoe::Error naming the option (by its make-data key, data.<name>) that is out of range.
  void validate() const;
  // Every option, under the names above (the make-data keys without "data."), plus
  // "name": "topic_language" and "segment_length_distribution".
  nlohmann::json to_json() const;
  // The inverse of to_json; missing keys keep their defaults, unknown keys are errors.
  static TopicLanguageOptions from_json(const nlohmann::json& json);
};

class TopicLanguage {
 public:
  explicit TopicLanguage(const TopicLanguageOptions& options);

  const TopicLanguageOptions& options() const { return options_; }
  // Topic k's own tokens are [part_begin(k), part_end(k)).
  int64_t part_begin(int64_t topic) const { return topic * options_.vocab_size / options_.topics; }
  int64_t part_end(int64_t topic) const { return (topic + 1) * options_.vocab_size / options_.topics; }
  // The topic whose part holds `token`.
  int64_t owner(int64_t token) const;
  // The likely successors of `previous` in `topic` ([successors] tokens inside the topic's part).
  std::span<const int32_t> successors(int64_t topic, int64_t previous) const;

  // Document `document` (0-based): its tokens and the hidden topic of each.
  void generate_document(int64_t document, std::vector<int32_t>& tokens, std::vector<int16_t>& topics) const;
  // All `documents` documents, with topic labels and the options as the generator JSON.
  TokenDataset generate() const;

 private:
  int64_t document_length(int64_t document) const;
  TopicLanguageOptions options_;
  std::vector<int32_t> successor_table_;  // [topics, vocab_size, successors]
};

}  // namespace temoe::data
