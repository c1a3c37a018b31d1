// Writes the seed of fuzz_checkpoint_file: the HDF5 content (everything after the 512-byte header)
// of a small but complete checkpoint: two parameter sets, one with AdamW moments, a scalar and an
// empty tensor, three ranks and an expert placement.
//   make_checkpoint_seed OUT_FILE
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "src/checkpoint/checkpoint_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_checkpoint_seed OUT_FILE\n";
    return 2;
  }
  using temoe::Tensor;
  temoe::Checkpoint checkpoint;
  checkpoint.config = "[train]\nsteps = 10\n";
  checkpoint.model = {"mixtral", temoe::fingerprint_weights({{"layers.0.w", {4, 8}}})};
  checkpoint.step = 3;
  checkpoint.tokens = 300;
  temoe::ParameterSetState controller;
  controller.name = "controller";
  controller.parameter_names = {"w", "temperature", "unused"};
  controller.values = {Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}), Tensor::from_vector({}, {1.5f}), Tensor::zeros({0, 3})};
  controller.has_optimizer = true;
  controller.optimizer_step = 3;
  for (const auto& value : controller.values) {
    controller.first_moments.push_back(Tensor::zeros(value.shape()));
    controller.second_moments.push_back(Tensor::zeros(value.shape()));
  }
  temoe::ParameterSetState critic;
  critic.name = "critic";
  critic.parameter_names = {"value_head"};
  critic.values = {Tensor::from_vector({5}, {0.5f, 1, 2, 3, 4})};
  checkpoint.parameter_sets = {controller, critic};
  for (uint64_t rank = 0; rank < 3; ++rank) {
    checkpoint.ranks.push_back({{rank + 1, ~rank}, {static_cast<int64_t>(rank) * 10}});
  }
  checkpoint.expert_placement = temoe::StoredPlacement{3, {0, 1, 2, 0}};
  const std::filesystem::path whole = std::string(argv[1]) + ".whole";
  temoe::write_checkpoint_file(whole, checkpoint);
  std::ifstream in(whole, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out.write(bytes.data() + 512, static_cast<std::streamsize>(bytes.size() - 512));
  std::filesystem::remove(whole);
  return out ? 0 : 1;
}
