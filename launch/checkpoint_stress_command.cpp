// temoe checkpoint-stress (hidden): commits synthetic checkpoints to a run directory in a loop,
// resuming from the latest one. The kill-loop test kill -9's it at random instants and checks
// that the latest checkpoint always loads and verifies.
#include <cstdint>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "src/checkpoint/checkpoint_directory.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"
#include "src/core/error.hpp"

namespace temoe::launch {

int run_checkpoint_stress(const Arguments& arguments) {
  po::options_description options("temoe checkpoint-stress");
  options.add_options()
      ("run-dir", po::value<std::string>(), "run directory for ckpt-<step>.h5 and latest")
      ("size-mb", po::value<double>()->default_value(1.0), "tensor data per checkpoint, MB (10^6 bytes)")
      ("keep", po::value<int>()->default_value(2), "checkpoints kept (0: all)")
      ("count", po::value<int64_t>()->default_value(0), "checkpoints to commit (0: until killed)")
      ("verbose", "print each committed step");
  const auto parsed = parse_command_line("checkpoint-stress", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe checkpoint-stress --run-dir DIR [--size-mb M] [--keep K] [--count N]", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("run-dir")) TEMOE_FAIL("temoe checkpoint-stress: --run-dir DIR is required");
  const std::string run_directory = values["run-dir"].as<std::string>();
  const auto bytes = static_cast<int64_t>(values["size-mb"].as<double>() * 1e6);
  CheckpointDirectory directory(run_directory, values["keep"].as<int>());
  int64_t step = 1;
  if (const auto loaded = load_latest_checkpoint(run_directory, LoadOptions{})) {
    verify_synthetic_checkpoint(loaded->checkpoint);
    step = loaded->checkpoint.step + 1;
  }
  const int64_t count = values["count"].as<int64_t>();
  for (int64_t committed = 0; count == 0 || committed < count; ++committed, ++step) {
    const auto file = directory.commit(make_synthetic_checkpoint(step, bytes));
    if (values.count("verbose")) std::cout << "committed " << file.string() << std::endl;
  }
  return 0;
}

}  // namespace temoe::launch
