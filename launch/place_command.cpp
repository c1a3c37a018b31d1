// temoe place: an expert placement from co-selection on calibration data. Runs the frozen model on
// `place.batches` batches of the training data, takes each token's top-`place.set_size` experts by
// router probability in every layer (the router's top-k by default; k_hat approximates the masks a
// controller holds), searches a placement that keeps those sets on few ranks under a load bound,
// and writes it for `--parallel.placement=FILE`. One placement serves every layer (a rank holds the
// same expert ids in all layers), so the sets of all layers are pooled.
#include <cstdio>
#include <iostream>

#include "launch/command_line.hpp"
#include "launch/commands.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/placement_file.hpp"
#include "launch/training_setup.hpp"
#include "parallel/co_selection_placement.hpp"
#include "src/core/error.hpp"
#include "src/data/batch_sampler.hpp"

namespace temoe::launch {

int run_place(const Arguments& arguments) {
  po::options_description options("temoe place");
  options.add_options()
      ("out", po::value<std::string>(), "placement file to write (JSON, written atomically)")
      ("ep-size", po::value<int>(), "expert-parallel ranks the placement is for")
      ("place.batches", po::value<int64_t>()->default_value(8), "calibration batches of train.batch_size sequences")
      ("place.set_size", po::value<int64_t>()->default_value(0),
       "experts per token set: 0 = the router's top-k; k_hat approximates held masks")
      ("place.load_tolerance", po::value<double>()->default_value(0.1), "a rank may take (1 + this) x the mean load")
      ("json", po::value<std::string>(), "also write the placement's quality figures to this JSON file");
  const auto parsed = parse_command_line("place", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe place --config FILE --ep-size X --out FILE.json [--place.set_size=K]", options);
    return 0;
  }
  const auto& values = parsed.values;
  if (!values.count("out")) TEMOE_FAIL("temoe place: --out FILE.json is required");
  if (!values.count("ep-size")) TEMOE_FAIL("temoe place: --ep-size X is required");
  apply_thread_settings(values);
  const int ep_size = values["ep-size"].as<int>();
  const int64_t batches = values["place.batches"].as<int64_t>();
  const int64_t global_batch = values["train.batch_size"].as<int64_t>(), time = values["train.sequence_length"].as<int64_t>();

  auto model = load_local_model(model_directory_from(values, "place"), parse_device(values["runtime.device"].as<std::string>()));
  const ModelConfig& config = model->config;
  const int64_t set_size = values["place.set_size"].as<int64_t>() == 0 ? config.top_k
                                                                        : values["place.set_size"].as<int64_t>();
  if (set_size < 1 || set_size > config.num_experts) {
    TEMOE_FAIL("place.set_size = " << set_size << ": expected 1 .. " << config.num_experts << " (the model's experts)");
  }
  if (ep_size < 1 || config.num_experts % ep_size != 0) {
    TEMOE_FAIL("--ep-size " << ep_size << " does not divide the model's " << config.num_experts << " experts");
  }
  const data::TokenDataset dataset = read_training_data(values, false, "place");
  data::BatchSampler sampler(dataset, {time, values["train.seed"].as<uint64_t>(), true});

  SelectionSamples samples{config.num_experts, set_size, {}};
  for (int64_t step = 0; step < batches; ++step) {
    const auto batch = sampler.batch(step, global_batch, 0, global_batch);
    ForwardRecord record;
    model->transformer->forward(batch.tokens, batch.batch, batch.time, &record);
    for (const RouterRecord& layer : record.layers) {
      if (!layer.probabilities.defined()) continue;  // a dense layer (Qwen's mlp_only_layers) routes nothing
      // The set_size most probable experts of each token (ties to the lower id), as the router ranks them.
      const int64_t tokens = layer.probabilities.dim(0);
      std::vector<int32_t> chosen(static_cast<size_t>(tokens * set_size));
      Tensor probabilities_chosen = Tensor::zeros({tokens, set_size});
      model->backend->top_k_rows(layer.probabilities, static_cast<int>(set_size), chosen, probabilities_chosen);
      samples.sets.insert(samples.sets.end(), chosen.begin(), chosen.end());
    }
  }
  PlacementSearchOptions search;
  search.load_tolerance = values["place.load_tolerance"].as<double>();
  search.seed = values["train.seed"].as<uint64_t>();
  const ExpertPlacement placement = co_selection_placement(samples, ep_size, search);
  const auto contiguous = evaluate_placement(ExpertPlacement::contiguous(config.num_experts, ep_size), samples);
  const auto placed = evaluate_placement(placement, samples);
  write_placement_file(values["out"].as<std::string>(), placement);
  std::printf("temoe place: %lld sets of %lld experts (%lld layers), %d ranks\n", static_cast<long long>(samples.count()),
              static_cast<long long>(set_size), static_cast<long long>(config.num_layers), ep_size);
  std::printf("  contiguous: %.3f ranks per set, busiest rank %.3fx the mean load\n", contiguous.mean_ranks_spanned,
              contiguous.max_load_over_mean);
  std::printf("  placed:     %.3f ranks per set, busiest rank %.3fx the mean load -> %s\n", placed.mean_ranks_spanned,
              placed.max_load_over_mean, values["out"].as<std::string>().c_str());
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(),
                      {{"sets", samples.count()},
                       {"set_size", set_size},
                       {"ep_size", ep_size},
                       {"owners", placement.owners()},
                       {"contiguous", {{"mean_ranks_spanned", contiguous.mean_ranks_spanned},
                                       {"max_load_over_mean", contiguous.max_load_over_mean}}},
                       {"placed", {{"mean_ranks_spanned", placed.mean_ranks_spanned},
                                   {"max_load_over_mean", placed.max_load_over_mean}}}});
  }
  return 0;
}

}  // namespace temoe::launch
