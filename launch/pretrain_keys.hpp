#pragma once
// The [pretrain] configuration keys (temoe pretrain): defaults, units and descriptions in one
// place; command_line.cpp adds them to every command's configuration keys.
#include <boost/program_options.hpp>

#include "src/training/pretraining.hpp"

namespace temoe::launch {

boost::program_options::options_description pretrain_configuration_keys();

// The training options from the parsed keys.
PretrainingOptions pretraining_options(const boost::program_options::variables_map& values);

}  // namespace temoe::launch
