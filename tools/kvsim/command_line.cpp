#include "tools/kvsim/command_line.h"

#include "util/error.h"
#include "util/options_error.h"

namespace kvsim::cli {

namespace po = boost::program_options;

po::variables_map parse_command_line(const Args& args, const po::options_description& options,
                                     const po::positional_options_description& positional, const std::string& command) {
  po::variables_map v;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), v);
    po::notify(v);
  } catch (const po::error& e) {
    fail_input(command, options_error_text(e, args) + " (see " + command + " --help)");
  }
  return v;
}

}  // namespace kvsim::cli
