// temoe forward: logits for a batch of token sequences, on one rank or expert-parallel under mpirun.
#include <cstring>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/fault_injection.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/resource_usage.hpp"
#include "parallel/mpi_communicator.hpp"
#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"

namespace temoe::launch {

int run_forward(const Arguments& arguments) {
  po::options_description options("temoe forward");
  options.add_options()
      ("model", po::value<std::string>(), "model directory (overrides model.dir)")
      ("tokens", po::value<std::string>(), "input token ids, .npy int32 or int64 of shape [B, T]")
      ("out", po::value<std::string>(), "output logits, .npy float32 of shape [B, T, V] (written by rank 0)")
      ("json", po::value<std::string>(), "also write per-rank figures (peak memory, bytes read, traffic) here")
      ("adapters", po::value<std::string>(), "a PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) to apply");
  const auto parsed = parse_command_line("forward", arguments, options);
  if (parsed.help) {
    std::cout << command_help("[mpirun -np N] temoe forward --model DIR --tokens IN.npy --out OUT.npy "
                              "[--adapters DIR] [--parallel.ep_size=X] [--config FILE]",
                              options);
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

  const std::string token_path = values["tokens"].as<std::string>();
  const TokenArray tokens = read_token_npy(token_path);
  auto model = load_distributed_model(model_dir, parse_device(values["runtime.device"].as<std::string>()), world,
                                      values["parallel.ep_size"].as<int>(),
                                      values["parallel.placement"].as<std::string>(),
                                      values.count("adapters") ? values["adapters"].as<std::string>() : std::string());
  if (const auto fault = fault_point_from_environment()) {
    model->experts = std::make_unique<FaultInjectingExperts>(std::move(model->experts), *fault, world.rank());
    model->transformer = std::make_unique<MoeTransformer>(model->config, model->weights, *model->backend, *model->experts);
  }
  const int64_t batch = tokens.shape[0], time = tokens.shape[1];
  check_token_ids(tokens.ids, model->config.vocab_size, time, token_path);

  // Every rank owns a contiguous block of sequences (possibly none: it still joins the expert
  // all-to-alls); rank 0 gathers the logits in sequence order.
  const int64_t ranks = world.size(), rank = world.rank();
  const int64_t first = batch * rank / ranks, last = batch * (rank + 1) / ranks;
  const std::span<const int32_t> mine(tokens.ids.data() + first * time, static_cast<size_t>((last - first) * time));
  const Tensor logits = model->transformer->forward(mine, last - first, time);
  const auto local = logits.to_vector();
  const auto gathered = world.gather_v(std::as_bytes(std::span<const float>(local)), 0);
  if (rank == 0) {
    Tensor all({batch, time, model->config.vocab_size});
    TEMOE_CHECK(gathered.size() == static_cast<size_t>(all.numel()) * sizeof(float),
                "gathered " << gathered.size() << " bytes of logits, expected " << all.numel() * 4);
    std::memcpy(all.data(), gathered.data(), gathered.size());
    write_float_npy(values["out"].as<std::string>(), all);
  }

  if (values.count("json")) {
    const int64_t mine_figures[2] = {peak_resident_bytes(), static_cast<int64_t>(model->checkpoint->bytes_read())};
    const auto figures = world.gather_v(std::as_bytes(std::span<const int64_t>(mine_figures)), 0);
    if (rank == 0) {
      nlohmann::json peak = nlohmann::json::array(), read = nlohmann::json::array();
      const auto* values_read = reinterpret_cast<const int64_t*>(figures.data());
      for (int64_t r = 0; r < ranks; ++r) {
        peak.push_back(values_read[2 * r]);
        read.push_back(values_read[2 * r + 1]);
      }
      write_json_report(values["json"].as<std::string>(),
                        {{"world_size", ranks},
                         {"ep_size", model->grid->shape().ep_size},
                         {"dp_size", model->grid->shape().dp_size},
                         {"peak_resident_bytes_per_rank", peak},
                         {"weight_bytes_read_per_rank", read}});
    }
  }
  world.barrier();
  return 0;
}

}  // namespace temoe::launch
