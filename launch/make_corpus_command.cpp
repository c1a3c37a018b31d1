// temoe make-corpus: a byte-level corpus of real text files grouped by kind, packed so that
// domains change inside a sequence (src/data/byte_corpus.hpp), written as a training and an
// evaluation token file (HDF5) with the input's sha256. launch/make_corpus.sh names the Debian
// packages that supply the kinds.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/json_report.hpp"
#include "src/core/error.hpp"
#include "src/data/byte_corpus.hpp"
#include "src/data/token_dataset.hpp"

namespace temoe::launch {

namespace {

void print_summary(const data::ByteCorpus& corpus, double seconds) {
  const nlohmann::json json = corpus.to_json();
  std::printf("temoe make-corpus: %lld input files (sha256 %s) in %.2f s\n", static_cast<long long>(corpus.input_files),
              corpus.input_sha256.c_str(), seconds);
  std::printf("  %-18s %12s %12s %12s %12s %8s\n", "kind (topic)", "train files", "train bytes", "eval files",
              "eval bytes", "skipped");
  for (const auto& kind : corpus.kinds) {
    const std::string name = kind.name + " (" + std::to_string(kind.topic) + ")";
    std::printf("  %-18s %12lld %12lld %12lld %12lld %8lld\n", name.c_str(), static_cast<long long>(kind.train_files),
                static_cast<long long>(kind.train_bytes_used), static_cast<long long>(kind.eval_files),
                static_cast<long long>(kind.eval_bytes_used),
                static_cast<long long>(kind.skipped_empty + kind.skipped_binary));
  }
  std::printf("  train: %lld tokens in %lld documents, mean domain segment %.1f bytes; eval: %lld tokens in %lld "
              "documents, mean segment %.1f bytes (bytes columns: packed; a kind's rest is unused once fewer than two "
              "kinds are left)\n",
              static_cast<long long>(corpus.train.token_count()), static_cast<long long>(corpus.train.document_count()),
              json["train_mean_segment_length"].get<double>(), static_cast<long long>(corpus.eval.token_count()),
              static_cast<long long>(corpus.eval.document_count()), json["eval_mean_segment_length"].get<double>());
}

}  // namespace

int run_make_corpus(const Arguments& arguments) {
  const data::ByteCorpusOptions defaults;
  po::options_description options("temoe make-corpus");
  options.add_options()
      ("kind", po::value<std::vector<std::string>>()->composing(),
       "NAME=PATH: files of kind NAME (repeatable; PATH a file, a directory walked recursively, or @LIST, a file of "
       "paths one a line); kinds become the data's topics in name order")
      ("out-train", po::value<std::string>(), "training split, HDF5 token data (written atomically)")
      ("out-eval", po::value<std::string>(), "evaluation split, HDF5 token data (files never in the training split)")
      ("min-chunk-bytes", po::value<int64_t>()->default_value(defaults.min_chunk_bytes),
       "shortest chunk of one file between two domain changes (cut at line ends)")
      ("max-chunk-bytes", po::value<int64_t>()->default_value(defaults.max_chunk_bytes),
       "longest chunk target (chunk targets are uniform in [min, max])")
      ("document-bytes", po::value<int64_t>()->default_value(defaults.document_bytes), "tokens per document")
      ("eval-fraction", po::value<double>()->default_value(defaults.eval_fraction, "0.1"),
       "share of the files, by a hash of their path, in the evaluation split")
      ("seed", po::value<uint64_t>()->default_value(defaults.seed), "seed of the chunk lengths, file order and kind draws")
      ("json", po::value<std::string>(), "also write the corpus description (counts per kind, input sha256) here");
  const auto parsed = parse_command_line("make-corpus", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe make-corpus --kind NAME=PATH ... --out-train TRAIN.h5 --out-eval EVAL.h5 "
                              "[--min-chunk-bytes N] [--max-chunk-bytes N] [--document-bytes N] [--eval-fraction F] "
                              "[--seed S] [--json FILE]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("out-train")) TEMOE_FAIL("temoe make-corpus: --out-train FILE.h5 is required");
  if (!values.count("out-eval")) TEMOE_FAIL("temoe make-corpus: --out-eval FILE.h5 is required");
  const std::filesystem::path out_train = values["out-train"].as<std::string>(),
                              out_eval = values["out-eval"].as<std::string>();
  if (std::filesystem::absolute(out_train).lexically_normal() == std::filesystem::absolute(out_eval).lexically_normal()) {
    TEMOE_FAIL("temoe make-corpus: --out-train and --out-eval are the same file " << out_train.string());
  }
  data::ByteCorpusOptions corpus_options;
  if (values.count("kind")) {
    for (const auto& argument : values["kind"].as<std::vector<std::string>>()) {
      data::add_kind_argument(corpus_options.kinds, argument);
    }
  }
  corpus_options.min_chunk_bytes = values["min-chunk-bytes"].as<int64_t>();
  corpus_options.max_chunk_bytes = values["max-chunk-bytes"].as<int64_t>();
  corpus_options.document_bytes = values["document-bytes"].as<int64_t>();
  corpus_options.eval_fraction = values["eval-fraction"].as<double>();
  corpus_options.seed = values["seed"].as<uint64_t>();

  const auto started = std::chrono::steady_clock::now();
  const data::ByteCorpus corpus = data::build_byte_corpus(corpus_options);
  data::write_token_dataset(out_train, corpus.train);
  data::write_token_dataset(out_eval, corpus.eval);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  print_summary(corpus, seconds);
  std::printf("wrote %s and %s\n", out_train.c_str(), out_eval.c_str());
  if (values.count("json")) write_json_report(values["json"].as<std::string>(), corpus.to_json());
  return 0;
}

}  // namespace temoe::launch
