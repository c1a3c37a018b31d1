#include "launch/command_line.hpp"

#include <cblas.h>
#include <omp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "launch/pretrain_keys.hpp"
#include "src/core/error.hpp"


namespace temoe::launch {

po::options_description configuration_keys() {
  po::options_description keys("Configuration keys (in --config FILE as [section] key = value, or --section.key=value)");
  keys.add_options()
      ("model.dir", po::value<std::string>(), "Hugging Face model directory (config.json + *.safetensors)")
      ("runtime.device", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
      ("runtime.threads", po::value<int>()->default_value(0), "threads per rank for kernels and BLAS (0: library default)")
      ("parallel.ep_size", po::value<int>()->default_value(0),
       "expert-parallel ranks per group (0: the largest divisor of E that divides the world size)")
      ("parallel.placement", po::value<std::string>()->default_value(""),
       "expert placement: a JSON file {\"ep_size\": X, \"owners\": [rank of each expert]} (temoe place writes one); empty: contiguous blocks")
      ("parallel.dispatch", po::value<std::string>()->default_value("token"),
       "expert exchange: token (sizes renegotiated on every call) or option (calls with held masks keep a per-layer "
       "plan until a switch changes it, and talk only to the ranks the masks span; same results)")
      ("data.path", po::value<std::string>(), "training tokens: an HDF5 token dataset (temoe make-data)")
      ("data.eval_path", po::value<std::string>(), "held-out tokens for temoe eval (default: data.path)")
      ("train.steps", po::value<int64_t>()->default_value(200), "optimizer steps")
      ("train.seed", po::value<uint64_t>()->default_value(1), "seed of the data order, the initialisation and every draw")
      ("train.batch_size", po::value<int64_t>()->default_value(8), "sequences per step over all ranks")
      ("train.sequence_length", po::value<int64_t>()->default_value(128), "tokens per sequence")
      ("train.learning_rate", po::value<double>()->default_value(1e-3), "AdamW learning rate of the controllers")
      ("train.weight_decay", po::value<double>()->default_value(0.0), "AdamW weight decay")
      ("train.clip_norm", po::value<double>()->default_value(1.0), "global gradient-norm clip")
      ("train.log_every", po::value<int64_t>()->default_value(10), "steps between progress lines")
      ("train.checkpoint_every", po::value<int64_t>()->default_value(0),
       "steps between checkpoints in the run directory (0: only at the end; one is always written at the end and on SIGTERM/SIGUSR1)")
      ("train.keep_checkpoints", po::value<int>()->default_value(3), "committed checkpoints kept in the run directory (0: all)")
      ("train.max_nonfinite_steps", po::value<int64_t>()->default_value(3),
       "consecutive steps with a non-finite loss or gradient (on any rank) that are skipped before the run stops with an error")
      ("train.watchdog_seconds", po::value<int64_t>()->default_value(600),
       "seconds a rank may go without reaching a step boundary before it ends the whole job with exit status 4, naming "
       "itself, its phase and the step (0: no watchdog)")
      ("controller.k_hat", po::value<int64_t>()->default_value(8), "experts in a held mask (k <= k_hat <= E)")
      ("controller.eta", po::value<double>()->default_value(0.02), "deliberation cost of a switch")
      ("controller.hidden", po::value<int64_t>()->default_value(64), "width of the controller MLPs")
      ("controller.embedding_dim", po::value<int64_t>()->default_value(32), "expert embedding size")
      ("controller.set_dim", po::value<int64_t>()->default_value(32), "mask encoding size")
      ("controller.termination_bias", po::value<double>()->default_value(-3.0), "initial termination logit")
      ("controller.gamma", po::value<double>()->default_value(0.95), "discount")
      ("controller.lambda", po::value<double>()->default_value(0.95), "GAE lambda")
      ("controller.value_coefficient", po::value<double>()->default_value(0.01), "weight of the Q (option-value) loss")
      ("controller.value_statistics_rate", po::value<double>()->default_value(0.0),
       "rate at which Q's target mean and scale (PopArt) follow each batch's targets, in [0, 1] (0: raw returns)")
      ("controller.selection_coefficient", po::value<double>()->default_value(0.0),
       "weight of the selection loss (0: not learned; every reload, in training too, loads the router's greedy top-k_hat)")
      ("controller.selection_learning_rate", po::value<double>()->default_value(3e-4),
       "AdamW learning rate of the selection delta on the router's logits (the other controller parameters: "
       "train.learning_rate)")
      ("controller.communication_cost", po::value<double>()->default_value(0.0),
       "per token and layer: cost per rank other than the token's own that the held mask spans (0: off)")
      ("controller.selection_locality_bias", po::value<double>()->default_value(0.0),
       "logits subtracted from the experts of other ranks whenever a mask is selected: a locality prior that trades closeness "
       "to the teacher for traffic (0: off)")
      ("rollout.mode", po::value<std::string>()->default_value("teacher_forced"),
       "teacher_forced: the data's tokens; sampled: the student continues the data's first rollout.prompt_length tokens, "
       "drawing from (1 - rollout.teacher_mix) p_student + rollout.teacher_mix p_teacher, with importance weights")
      ("rollout.prompt_length", po::value<int64_t>()->default_value(16),
       "sampled rollouts: prompt tokens per sequence taken from the data (1 .. train.sequence_length)")
      ("rollout.teacher_mix", po::value<double>()->default_value(0.2),
       "sampled rollouts: the teacher's share of the distribution tokens are drawn from, in [0, 1) (the paper: 0.2)")
      ("rollout.reward", po::value<std::string>()->default_value("kl"),
       "kl: -KL(teacher || student) at each position (dense, the teacher-forced default); log_ratio: log p_teacher - log p_student of the next token")
      ("eval.batches", po::value<int64_t>()->default_value(8), "held-out batches temoe eval scores")
      ("eval.cache_decay", po::value<double>()->default_value(0.9), "moving-average decay of the greedy cache baseline")
      ("eval.cache_decays", po::value<std::string>()->default_value("0,0.5,0.8,0.9,0.95,0.98,0.99,0.995,0.999"),
       "decays the greedy cache is swept over for its front (comma-separated, each in [0, 1); empty: no front)");
  keys.add(pretrain_configuration_keys());
  return keys;
}

ParsedCommandLine parse_command_line(const std::string& command, const std::vector<std::string>& arguments,
                                     const po::options_description& command_options,
                                     const po::positional_options_description& positional) {
  po::options_description general("General");
  general.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI configuration file");
  po::options_description all;
  all.add(general).add(command_options).add(configuration_keys());
  ParsedCommandLine parsed;
  try {
    // No prefix guessing: --data.topic must not silently mean --data.topics.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(arguments).options(all).positional(positional).style(style).run(), parsed.values);
  } catch (const po::error& error) {
    TEMOE_FAIL("temoe " << command << ": " << error.what() << " (see 'temoe " << command << " --help')");
  }
  parsed.help = parsed.values.count("help") != 0;
  if (!parsed.help && parsed.values.count("config")) {
    const std::string path = parsed.values["config"].as<std::string>();
    std::ifstream stream(path);
    if (!stream) TEMOE_FAIL(path << ": cannot open the config file");
    po::options_description file_keys = configuration_keys();
    try {
      po::store(po::parse_config_file(stream, file_keys, /*allow_unregistered=*/false), parsed.values);
    } catch (const po::error& error) {
      TEMOE_FAIL(path << ": " << error.what() << " (the known keys are listed by 'temoe " << command << " --help')");
    }
  }
  try {
    po::notify(parsed.values);
  } catch (const po::error& error) {
    TEMOE_FAIL("temoe " << command << ": " << error.what());
  }
  return parsed;
}

std::string command_help(const std::string& usage, const po::options_description& command_options) {
  std::ostringstream stream;
  stream << "usage: " << usage << "\n\n" << command_options << "\n" << configuration_keys();
  return stream.str();
}

std::string resolved_configuration(const po::variables_map& values) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> sections;
  const po::options_description known = configuration_keys();
  for (const auto& option : known.options()) {
    const std::string& name = option->long_name();
    if (!values.count(name)) continue;
    const boost::any& value = values[name].value();
    std::ostringstream text;
    text.precision(17);
    if (const auto* string_value = boost::any_cast<std::string>(&value)) text << *string_value;
    else if (const auto* int_value = boost::any_cast<int>(&value)) text << *int_value;
    else if (const auto* long_value = boost::any_cast<int64_t>(&value)) text << *long_value;
    else if (const auto* unsigned_value = boost::any_cast<uint64_t>(&value)) text << *unsigned_value;
    else if (const auto* double_value = boost::any_cast<double>(&value)) text << *double_value;
    else continue;
    const auto dot = name.find('.');
    sections[name.substr(0, dot)].emplace_back(name.substr(dot + 1), text.str());
  }
  std::ostringstream out;
  out << "# resolved configuration: every key, as this run used it\n";
  for (const auto& [section, keys] : sections) {
    out << "\n[" << section << "]\n";
    for (const auto& [key, value] : keys) out << key << " = " << value << "\n";
  }
  return out.str();
}

std::string resolved_value(const std::string& configuration, const std::string& key) {
  const auto dot = key.find('.');
  const std::string section = "[" + key.substr(0, dot) + "]", prefix = key.substr(dot + 1) + " = ";
  std::istringstream lines(configuration);
  std::string current;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.front() == '[') current = line;
    else if (current == section && line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  return "";
}

void apply_thread_settings(const po::variables_map& values) {
  const int threads = values["runtime.threads"].as<int>();
  if (threads < 0) TEMOE_FAIL("runtime.threads = " << threads << ": expected 0 (default) or a positive count");
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
}

}  // namespace temoe::launch
