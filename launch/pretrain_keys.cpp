#include "launch/pretrain_keys.hpp"

#include <string>

namespace temoe::launch {

namespace po = boost::program_options;

po::options_description pretrain_configuration_keys() {
  const PretrainingOptions defaults;
  po::options_description keys("Pretraining (temoe pretrain)");
  keys.add_options()
      ("pretrain.steps", po::value<int64_t>()->default_value(defaults.steps), "optimizer updates")
      ("pretrain.batch_size", po::value<int64_t>()->default_value(defaults.batch_size),
       "sequences per step over all ranks (a multiple of the world size)")
      ("pretrain.sequence_length", po::value<int64_t>()->default_value(defaults.sequence_length),
       "tokens per training sequence")
      ("pretrain.learning_rate", po::value<double>()->default_value(defaults.learning_rate, "3e-3"),
       "peak AdamW learning rate, reached after the warm-up")
      ("pretrain.min_learning_rate", po::value<double>()->default_value(defaults.min_learning_rate, "3e-4"),
       "learning rate the cosine decay reaches at the last step")
      ("pretrain.warmup_steps", po::value<int64_t>()->default_value(defaults.warmup_steps),
       "steps of linear learning-rate warm-up")
      ("pretrain.weight_decay", po::value<double>()->default_value(defaults.weight_decay, "0.1"),
       "AdamW decoupled weight decay of the matrices (norm weights get none)")
      ("pretrain.beta1", po::value<double>()->default_value(defaults.beta1, "0.9"), "AdamW beta1")
      ("pretrain.beta2", po::value<double>()->default_value(defaults.beta2, "0.95"), "AdamW beta2")
      ("pretrain.grad_clip", po::value<double>()->default_value(defaults.gradient_clip, "1"),
       "clip the global gradient L2 norm to this (0: no clipping)")
      ("pretrain.load_balancing", po::value<double>()->default_value(defaults.load_balancing, "0.01"),
       "coefficient of the Switch load-balancing loss (coefficient * E * sum_i f_i P_i, averaged over layers)")
      ("pretrain.routing_locality", po::value<double>()->default_value(defaults.routing_locality, "0"),
       "coefficient of the routing-locality loss: the entropy of each window's mean routing, averaged over "
       "windows and layers (0: off)")
      ("pretrain.locality_window", po::value<int64_t>()->default_value(defaults.locality_window),
       "tokens per window of the routing-locality loss (divides pretrain.sequence_length)")
      ("pretrain.seed", po::value<uint64_t>()->default_value(defaults.seed),
       "seed of the initial weights and of the data order")
      ("pretrain.init_std", po::value<double>()->default_value(0.02, "0.02"),
       "standard deviation of the initial weight matrices")
      ("pretrain.log_interval", po::value<int64_t>()->default_value(10), "steps between progress lines (rank 0)")
      ("pretrain.checkpoint_interval", po::value<int64_t>()->default_value(100),
       "steps between HDF5 checkpoints in the run directory (0: only at the end); a rerun resumes from the latest")
      ("pretrain.keep_checkpoints", po::value<int>()->default_value(2), "checkpoints kept in the run directory (0: all)")
      ("pretrain.init_model", po::value<std::string>()->default_value(""),
       "start from this Hugging Face model directory instead of random weights (its config.json is the architecture)")
      ("pretrain.arch", po::value<std::string>()->default_value("mixtral"),
       "architecture of a model trained from scratch: mixtral or olmoe")
      ("pretrain.preset", po::value<std::string>()->default_value("tiny"),
       "size of a model trained from scratch: tiny or small (temoe init-model); its vocab_size becomes the data's")
      ("pretrain.num_experts", po::value<int64_t>()->default_value(0), "experts per MoE layer (0: the preset's)")
      ("pretrain.top_k", po::value<int64_t>()->default_value(0), "experts per token (0: the preset's)")
      ("pretrain.num_layers", po::value<int64_t>()->default_value(0), "transformer layers (0: the preset's)")
      ("pretrain.hidden_size", po::value<int64_t>()->default_value(0), "d_model (0: the preset's)")
      ("pretrain.expert_ffn_size", po::value<int64_t>()->default_value(0),
       "intermediate size of one expert (0: the preset's)")
      ("pretrain.tie_embeddings", po::value<bool>()->default_value(false), "share the embedding with the LM head");
  return keys;
}

PretrainingOptions pretraining_options(const po::variables_map& values) {
  PretrainingOptions options;
  options.steps = values["pretrain.steps"].as<int64_t>();
  options.batch_size = values["pretrain.batch_size"].as<int64_t>();
  options.sequence_length = values["pretrain.sequence_length"].as<int64_t>();
  options.learning_rate = values["pretrain.learning_rate"].as<double>();
  options.min_learning_rate = values["pretrain.min_learning_rate"].as<double>();
  options.warmup_steps = values["pretrain.warmup_steps"].as<int64_t>();
  options.weight_decay = values["pretrain.weight_decay"].as<double>();
  options.beta1 = values["pretrain.beta1"].as<double>();
  options.beta2 = values["pretrain.beta2"].as<double>();
  options.gradient_clip = values["pretrain.grad_clip"].as<double>();
  options.load_balancing = values["pretrain.load_balancing"].as<double>();
  options.routing_locality = values["pretrain.routing_locality"].as<double>();
  options.locality_window = values["pretrain.locality_window"].as<int64_t>();
  options.seed = values["pretrain.seed"].as<uint64_t>();
  return options;
}

}  // namespace temoe::launch
