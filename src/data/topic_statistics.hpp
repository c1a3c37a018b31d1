#pragma once
// Measured statistics of topic-labelled token data (what `temoe make-data` prints), to check that
// generated data follow their parameters and to know the entropies a model should beat.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "src/data/token_dataset.hpp"

namespace temoe::data {

struct TopicStatistics {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t topic_switches = 0;  // positions inside a document whose topic differs from the previous one
  // Tokens per topic switch: the mean segment length, counting a segment cut by the end of its
  // document as censored (its tokens count, it does not). This is the maximum-likelihood estimate for
  // a constant switching hazard, and nearly unbiased for the shifted geometric segments of the topic
  // language: by renewal theory a document of n tokens holds about n/mean - (1 - var/mean^2)/2
  // switches, so short documents bias it up a little (+1% measured for the defaults: 48.5 for 48,
  // 512-token documents; 48.0 with 50,000-token documents). Infinite when there is no switch.
  double mean_segment_length = 0;
  // Tokens per segment, counting segments cut by a document end as whole ones (biased low).
  double mean_observed_segment_length = 0;
  std::vector<double> topic_share;         // [K] fraction of tokens in topic k
  std::vector<double> own_fraction;        // [K] fraction of topic k's tokens in topic k's part
  double own_fraction_overall = 0;         // the same over all tokens
  double unigram_entropy = 0;              // nats, of the empirical token distribution
  double bigram_conditional_entropy = 0;   // nats, H(next | previous) over pairs inside documents
  double topic_conditional_entropy = 0;    // nats, H(token | topic): what knowing the topic alone gives

  nlohmann::json to_json() const;
};

// Requires topic labels (dataset.has_topics()). Parts are as in TopicLanguage: topic k owns
// [k*V/K, (k+1)*V/K) with V = vocab_size and K = topic_count.
TopicStatistics measure_topic_statistics(const TokenDataset& dataset);

}  // namespace temoe::data
