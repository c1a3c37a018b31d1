#pragma once
// Options for every temoe command: command-specific flags, plus the configuration keys of
// configs/*.cfg (INI sections read with Boost.Program_options). A key can come from the config
// file given with --config or be overridden on the command line as --section.key=value; the
// command line wins. Unknown keys are errors that name the file or the flag.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace temoe::launch {

namespace po = boost::program_options;

// Every key a config file may hold, with its default and help text.
po::options_description configuration_keys();

struct ParsedCommandLine {
  po::variables_map values;
  bool help = false;
};

// Parses `arguments` (the words after the command name) against the command's own options plus
// the configuration keys. `positional` names options that may be given without their flag.
ParsedCommandLine parse_command_line(const std::string& command, const std::vector<std::string>& arguments,
                                     const po::options_description& command_options,
                                     const po::positional_options_description& positional = {});

// Help text for a command: its usage line, its options and the configuration keys.
std::string command_help(const std::string& usage, const po::options_description& command_options);

// Every configuration key with its value, as an INI file that --config reads back.
std::string resolved_configuration(const po::variables_map& values);

// The value of `key` ("section.name") in a text resolved_configuration wrote, or "" when absent.
std::string resolved_value(const std::string& configuration, const std::string& key);

// Applies runtime.threads (OpenMP and BLAS threads; 0 keeps the library defaults).
void apply_thread_settings(const po::variables_map& values);

}  // namespace temoe::launch
