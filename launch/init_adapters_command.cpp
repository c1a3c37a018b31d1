// temoe init-adapters: new LoRA adapters for a model, in Hugging Face PEFT's layout: PEFT's own
// initialisation (the adapted model is the base model until trained), or with --b-deviation a
// random B, so that a test's adapters change the logits.
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/core/error.hpp"
#include "src/model/lora_adapters.hpp"
#include "src/model/model_weights.hpp"

namespace temoe::launch {

int run_init_adapters(const Arguments& arguments) {
  po::options_description options("temoe init-adapters");
  options.add_options()
      ("model", po::value<std::string>(), "the base model directory (config.json and safetensors)")
      ("out", po::value<std::string>(), "output adapter directory")
      ("rank", po::value<int64_t>()->default_value(8), "LoRA rank r")
      ("alpha", po::value<double>()->default_value(16), "LoRA alpha (the update is scaled by alpha / r)")
      ("rslora", po::bool_switch(), "rank-stabilised scaling alpha / sqrt(r) (PEFT's use_rslora)")
      ("targets", po::value<std::string>()->default_value("attention,experts"),
       "the linear maps that get adapters: a comma-separated subset of attention, experts, router")
      ("seed", po::value<uint64_t>()->default_value(1), "random seed of A (and B)")
      ("b-deviation", po::value<double>()->default_value(0.0),
       "standard deviation of a random B (0: B = 0, PEFT's initialisation)");
  const auto parsed = parse_command_line("init-adapters", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe init-adapters --model DIR --out DIR [--rank R] [--alpha A] "
                              "[--targets attention,experts,router] [--seed S] [--b-deviation X]",
                              options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("model")) TEMOE_FAIL("temoe init-adapters: --model DIR is required");
  if (!values.count("out")) TEMOE_FAIL("temoe init-adapters: --out DIR is required");
  const std::string model_dir = values["model"].as<std::string>();
  LoraSettings settings;
  settings.rank = values["rank"].as<int64_t>();
  settings.alpha = values["alpha"].as<double>();
  settings.rank_stabilised = values["rslora"].as<bool>();
  settings.targets = parse_lora_targets(values["targets"].as<std::string>());
  const double b_deviation = values["b-deviation"].as<double>();
  if (!(b_deviation >= 0)) TEMOE_FAIL("temoe init-adapters: --b-deviation " << b_deviation << ": expected a value >= 0");
  const ModelConfig config = ModelConfig::from_file(std::filesystem::path(model_dir) / "config.json");
  ModelWeights weights = load_model_weights(SafetensorsCheckpoint(model_dir), config, {0, config.num_experts});
  initialize_lora_adapters(config, weights, settings, values["seed"].as<uint64_t>(), b_deviation);
  write_lora_adapters(values["out"].as<std::string>(), config, weights, settings, model_dir);
  std::cout << "wrote LoRA adapters (r " << settings.rank << ", alpha " << settings.alpha << ", "
            << lora_targets_string(settings.targets) << ") for " << model_dir << " to " << values["out"].as<std::string>()
            << "\n";
  return 0;
}

}  // namespace temoe::launch
