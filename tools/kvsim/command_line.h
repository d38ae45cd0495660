#pragma once
// The command-line parsing every `kvsim` subcommand shares.
#include <boost/program_options.hpp>
#include <string>

#include "tools/kvsim/commands.h"

namespace kvsim::cli {

// Parses a subcommand's arguments (and runs boost's notify). A malformed command line throws
// InputError "<command>: <what> (see <command> --help)", e.g. command = "kvsim run".
boost::program_options::variables_map parse_command_line(
    const Args& args, const boost::program_options::options_description& options,
    const boost::program_options::positional_options_description& positional, const std::string& command);

}  // namespace kvsim::cli
