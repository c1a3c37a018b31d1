// temoe make-data: the synthetic topic language of the embedded testbed, written as token data
// (HDF5, DESIGN.md section 4) with its measured statistics.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/json_report.hpp"
#include "src/core/error.hpp"
#include "src/data/token_dataset.hpp"
#include "src/data/topic_language.hpp"
#include "src/data/topic_statistics.hpp"

namespace temoe::launch {

namespace {

// The generator's parameters are flags of this command (not configuration keys): --data.<name>.
po::options_description data_options() {
  const data::TopicLanguageOptions defaults;
  po::options_description options("Topic language (--data.<key>=VALUE)");
  options.add_options()
      ("data.vocab_size", po::value<int64_t>()->default_value(defaults.vocab_size),
       "vocabulary size V; topic k owns the tokens [k*V/K, (k+1)*V/K)")
      ("data.topics", po::value<int64_t>()->default_value(defaults.topics), "number of topics K (>= 2)")
      ("data.mean_segment_length", po::value<double>()->default_value(defaults.mean_segment_length, "48"),
       "mean tokens per topic segment (min + geometric); the next topic is uniform among the others")
      ("data.min_segment_length", po::value<int64_t>()->default_value(defaults.min_segment_length),
       "shortest topic segment, tokens")
      ("data.own_vocabulary_probability",
       po::value<double>()->default_value(defaults.own_vocabulary_probability, "0.9"),
       "p_own: chance a token comes from its topic's part (else uniform over the other parts)")
      ("data.successors", po::value<int64_t>()->default_value(defaults.successors),
       "likely successors of each token in each topic's bigram table")
      ("data.successor_probability", po::value<double>()->default_value(defaults.successor_probability, "0.75"),
       "chance an own-part token is one of the previous token's successors (else uniform over the part)")
      ("data.documents", po::value<int64_t>()->default_value(defaults.documents), "number of documents D")
      ("data.document_length", po::value<int64_t>()->default_value(defaults.document_length),
       "tokens per document (the longest, when data.min_document_length is set)")
      ("data.min_document_length", po::value<int64_t>()->default_value(defaults.min_document_length),
       "0: every document has data.document_length tokens; else lengths uniform in [this, data.document_length]")
      ("data.language_seed", po::value<uint64_t>()->default_value(defaults.language_seed),
       "seed of the bigram tables (the language); keep it to draw held-out data of the same language");
  return options;
}

data::TopicLanguageOptions language_options(const po::variables_map& values) {
  data::TopicLanguageOptions options;
  options.vocab_size = values["data.vocab_size"].as<int64_t>();
  options.topics = values["data.topics"].as<int64_t>();
  options.mean_segment_length = values["data.mean_segment_length"].as<double>();
  options.min_segment_length = values["data.min_segment_length"].as<int64_t>();
  options.own_vocabulary_probability = values["data.own_vocabulary_probability"].as<double>();
  options.successors = values["data.successors"].as<int64_t>();
  options.successor_probability = values["data.successor_probability"].as<double>();
  options.documents = values["data.documents"].as<int64_t>();
  options.document_length = values["data.document_length"].as<int64_t>();
  options.min_document_length = values["data.min_document_length"].as<int64_t>();
  options.language_seed = values["data.language_seed"].as<uint64_t>();
  options.seed = values["seed"].as<uint64_t>();
  return options;
}

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

void print_statistics(const data::TopicLanguageOptions& options, const data::TopicStatistics& statistics) {
  std::ostringstream own, share;
  for (double value : statistics.own_fraction) own << " " << fixed(value, 3);
  for (double value : statistics.topic_share) share << " " << fixed(value, 3);
  std::cout << "  mean segment length         "
            << (std::isfinite(statistics.mean_segment_length) ? fixed(statistics.mean_segment_length, 2) : "inf")
            << " tokens (tokens per topic switch; parameter " << options.mean_segment_length << ", minimum "
            << options.min_segment_length << ")\n"
            << "  observed segment length     " << fixed(statistics.mean_observed_segment_length, 2)
            << " tokens (segments cut by a document end counted whole)\n"
            << "  own-vocabulary fraction     " << fixed(statistics.own_fraction_overall, 4) << " (parameter "
            << options.own_vocabulary_probability << "); per topic" << own.str() << "\n"
            << "  topic share                " << share.str() << "\n"
            << "  unigram entropy             " << fixed(statistics.unigram_entropy, 4) << " nats (uniform: "
            << fixed(std::log(static_cast<double>(options.vocab_size)), 4) << ")\n"
            << "  entropy given the topic     " << fixed(statistics.topic_conditional_entropy, 4) << " nats\n"
            << "  entropy given the previous  " << fixed(statistics.bigram_conditional_entropy, 4)
            << " nats (empirical bigram)\n";
}

}  // namespace

int run_make_data(const Arguments& arguments) {
  po::options_description options("temoe make-data");
  options.add_options()
      ("out", po::value<std::string>(), "output HDF5 file (written atomically)")
      ("seed", po::value<uint64_t>()->default_value(1), "seed of the documents (the language is data.language_seed)")
      ("json", po::value<std::string>(), "also write the parameters and measured statistics to this JSON file");
  options.add(data_options());
  const auto parsed = parse_command_line("make-data", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe make-data --out FILE.h5 [--seed S] [--data.<key>=VALUE ...] [--json FILE]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("out")) TEMOE_FAIL("temoe make-data: --out FILE.h5 is required");
  const std::filesystem::path out = values["out"].as<std::string>();
  const data::TopicLanguageOptions language_options_value = language_options(values);

  const auto started = std::chrono::steady_clock::now();
  const data::TopicLanguage language(language_options_value);
  const data::TokenDataset dataset = language.generate();
  data::write_token_dataset(out, dataset);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const data::TopicStatistics statistics = data::measure_topic_statistics(dataset);

  std::cout << "wrote " << out.string() << ": " << dataset.document_count() << " documents, " << dataset.token_count()
            << " tokens, vocabulary " << dataset.vocab_size << ", " << dataset.topic_count << " topics ("
            << fixed(seconds, 2) << " s)\n";
  print_statistics(language_options_value, statistics);
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(), {
                                                            {"file", out.string()},
                                                            {"parameters", language_options_value.to_json()},
                                                            {"statistics", statistics.to_json()},
                                                            {"seconds", seconds},
                                                        });
  }
  return 0;
}

}  // namespace temoe::launch
