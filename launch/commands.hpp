#pragma once
// The temoe subcommands. Each takes the words after its name and returns the exit code.
#include <string>
#include <vector>

namespace temoe::launch {

using Arguments = std::vector<std::string>;

int run_forward(const Arguments& arguments);
int run_init_model(const Arguments& arguments);
int run_init_adapters(const Arguments& arguments);
int run_inspect(const Arguments& arguments);
int run_bench(const Arguments& arguments);
int run_checkpoint_stress(const Arguments& arguments);  // hidden: for the kill-loop test
int run_train(const Arguments& arguments);
int run_eval(const Arguments& arguments);
int run_make_data(const Arguments& arguments);
int run_make_corpus(const Arguments& arguments);
int run_pretrain(const Arguments& arguments);
int run_place(const Arguments& arguments);

}  // namespace temoe::launch
