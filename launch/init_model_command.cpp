// temoe init-model: a random model in the Hugging Face layout, so tests exercise the real loader.
#include <iostream>
#include <optional>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/core/error.hpp"
#include "src/model/model_presets.hpp"

namespace temoe::launch {

int run_init_model(const Arguments& arguments) {
  po::options_description options("temoe init-model");
  options.add_options()
      ("arch", po::value<std::string>()->default_value("mixtral"), "mixtral, olmoe, qwen2-moe, qwen3-moe or gpt-oss")
      ("preset", po::value<std::string>()->default_value("tiny"), "tiny or small")
      ("seed", po::value<uint64_t>()->default_value(1), "random seed of the weights")
      ("dtype", po::value<std::string>()->default_value("F32"), "weight dtype on disk: F32, BF16 or F16; MXFP4 (gpt-oss): MXFP4 experts, BF16 for the rest")
      ("shards", po::value<int>()->default_value(1), "number of safetensors shards (1: model.safetensors)")
      ("out", po::value<std::string>(), "output directory");
  const auto parsed = parse_command_line("init-model", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe init-model --arch mixtral|olmoe|qwen2-moe|qwen3-moe|gpt-oss --preset tiny|small [--dtype F32|BF16|F16|MXFP4] --seed S --out DIR", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("out")) TEMOE_FAIL("temoe init-model: --out DIR is required");
  const std::string dtype_name = values["dtype"].as<std::string>();
  const bool mxfp4 = dtype_name == "MXFP4";
  const auto dtype = mxfp4 ? std::optional<DType>(DType::bf16) : parse_dtype(dtype_name);
  if (!dtype || *dtype == DType::u8) {
    TEMOE_FAIL("temoe init-model: --dtype " << dtype_name << ": expected F32, BF16, F16 or MXFP4");
  }
  const int shards = values["shards"].as<int>();
  if (shards < 1 || shards > 999) TEMOE_FAIL("temoe init-model: --shards " << shards << ": expected 1 to 999");
  const ModelConfig config =
      model_preset(parse_architecture(values["arch"].as<std::string>()), values["preset"].as<std::string>());
  if (mxfp4 && config.architecture != Architecture::gpt_oss) {
    TEMOE_FAIL("temoe init-model: --dtype MXFP4 is for --arch gpt-oss (its experts are stored in MXFP4), not --arch "
               << to_string(config.architecture));
  }
  write_random_model(config, values["seed"].as<uint64_t>(), values["out"].as<std::string>(), *dtype, shards, mxfp4);
  std::cout << "wrote " << to_string(config.architecture) << " " << values["preset"].as<std::string>() << " ("
            << config.parameters_total() << " parameters) to " << values["out"].as<std::string>() << "\n";
  return 0;
}

}  // namespace temoe::launch
