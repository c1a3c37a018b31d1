// temoe forward: logits for a batch of token sequences.
#include <cstring>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/model_session.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"

namespace temoe::launch {

int run_forward(const Arguments& arguments) {
  po::options_description options("temoe forward");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("tokens", po::value<std::string>(), "input token ids, .npy int32 or int64 of shape [B, T]")
      ("out", po::value<std::string>(), "output logits, .npy float32 of shape [B, T, V]");
  const auto parsed = parse_command_line("forward", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe forward --model DIR --tokens IN.npy --out OUT.npy [--config FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  std::string model_dir = values.count("model") ? values["model"].as<std::string>()
                          : values.count("model.dir") ? values["model.dir"].as<std::string>() : "";
  if (model_dir.empty()) TEMOE_FAIL("temoe forward: no model given (--model DIR or model.dir in the config)");
  if (!values.count("tokens")) TEMOE_FAIL("temoe forward: --tokens IN.npy is required");
  if (!values.count("out")) TEMOE_FAIL("temoe forward: --out OUT.npy is required");
  apply_thread_settings(values);

  int argc = 0;
  char** argv = nullptr;
  MpiSession session(&argc, &argv);
  MpiCommunicator world;

  const TokenArray tokens = read_token_npy(values["tokens"].as<std::string>());
  auto model = load_local_model(model_dir, parse_device(values["runtime.device"].as<std::string>()));
  const int64_t batch = tokens.shape[0], time = tokens.shape[1];
  check_token_ids(tokens.ids, model->config.vocab_size, time, values["tokens"].as<std::string>());

  // Data parallel: rank r takes a contiguous block of sequences; rank 0 gathers them in order.
  const int64_t ranks = world.size(), rank = world.rank();
  const int64_t first = batch * rank / ranks, last = batch * (rank + 1) / ranks;
  Tensor logits;
  if (last > first) {
    const std::span<const int32_t> mine(tokens.ids.data() + first * time, static_cast<size_t>((last - first) * time));
    logits = model->transformer->forward(mine, last - first, time);
  }
  const auto local = logits.defined() ? logits.to_vector() : std::vector<float>{};
  const auto gathered = world.gather_v(std::as_bytes(std::span<const float>(local)), 0);
  if (rank == 0) {
    Tensor all({batch, time, model->config.vocab_size});
    TEMOE_CHECK(gathered.size() == static_cast<size_t>(all.numel()) * sizeof(float),
                "gathered " << gathered.size() << " bytes of logits, expected " << all.numel() * 4);
    std::memcpy(all.data(), gathered.data(), gathered.size());
    write_float_npy(values["out"].as<std::string>(), all);
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
